// The line format of a durable store's log (docs/architecture.md#durability-rules), and reading a
// log back. One record per line, appended, never edited in place:
//
//   <8 hex digits: the first 4 bytes of sha256(json)> <json>\n
//   json = {"op":"put","key":"...","value":...} | {"op":"del","key":"..."}
//
// The last line for a key wins. JSON.stringify never writes a raw newline, so a line is a record;
// the checksum tells a damaged line (bad sector, bit flip) from a good one, and a last line with
// no newline is a write a crash cut short (never acknowledged: its fsync had not returned).
import { createHash } from "node:crypto";
import { topLevelStringMember } from "../coordinator/json-span.js";

export type LogOp = { op: "put"; key: string; value: unknown } | { op: "del"; key: string };

const NEWLINE = 0x0a;

function checksum(json: string): string {
  return createHash("sha256").update(json).digest("hex").slice(0, 8);
}

/** One line, newline included. Throws (synchronously) on a value JSON cannot carry. */
export function encodeRecord(op: LogOp): Buffer {
  const json = JSON.stringify(op);
  return Buffer.from(`${checksum(json)} ${json}\n`, "utf8");
}

/** A line (without its newline) back into its record, or why it cannot be. */
export function decodeRecord(line: string): LogOp | { error: string } {
  if (line.length < 10 || line[8] !== " ") return { error: "no checksum" };
  const json = line.slice(9);
  if (checksum(json) !== line.slice(0, 8)) return { error: "checksum mismatch" };
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return { error: "not JSON" };
  }
  if (typeof parsed !== "object" || parsed === null) return { error: "unexpected shape" };
  const r = parsed as { op?: unknown; key?: unknown; value?: unknown };
  if (typeof r.key !== "string") return { error: "unexpected shape" };
  if (r.op === "del") return { op: "del", key: r.key };
  if (r.op === "put" && "value" in r) return { op: "put", key: r.key, value: r.value };
  return { error: "unexpected shape" };
}

export interface LiveRecord<T> {
  value: T;
  /** Where its line starts in the log, and its length with the newline. */
  offset: number;
  length: number;
}

export interface DamagedLine {
  /** The line as found (kept for the operator), without its newline. */
  text: string;
  /** The key it names, when that can still be read. */
  key: string | null;
  reason: string;
}

export interface LogContents<T> {
  live: Map<string, LiveRecord<T>>;
  /** Lines that cannot be read, and refused records no later record of their key replaced. */
  damaged: DamagedLine[];
  /** Bytes up to the end of the last whole line. */
  wholeBytes: number;
  /** Bytes after it: a write a crash cut short. */
  tornBytes: number;
}

/**
 * Replay a log. A line whose checksum fails changes nothing: its bytes cannot be trusted, its key
 * included (a flipped bit may name another job), so it is reported with that key only when no
 * good record of the key follows it and the key holds nothing at the end (then that job is its
 * likeliest owner, failed back to be safe; a job with a record keeps it, and is not failed back).
 * A line whose checksum holds but whose value `validate` refuses replaces what its key held (that
 * record was superseded, by something this version cannot use), until a later good record.
 */
export function readLog<T>(bytes: Buffer, validate: (value: unknown) => T | null): LogContents<T> {
  const live = new Map<string, LiveRecord<T>>();
  const refusedByKey = new Map<string, DamagedLine>();
  const unreadable: { line: DamagedLine; at: number }[] = [];
  /** Where the last good record of each key starts. */
  const lastGood = new Map<string, number>();
  let start = 0;
  for (;;) {
    const end = bytes.indexOf(NEWLINE, start);
    if (end < 0) break;
    const text = bytes.toString("utf8", start, end);
    const rec = decodeRecord(text);
    if ("error" in rec) {
      const key = topLevelStringMember(text.slice(9), "key");
      unreadable.push({ line: { text, key, reason: rec.error }, at: start });
    } else if (rec.op === "del") {
      lastGood.set(rec.key, start);
      refusedByKey.delete(rec.key);
      live.delete(rec.key);
    } else {
      lastGood.set(rec.key, start);
      const value = validate(rec.value);
      if (value === null) {
        live.delete(rec.key);
        refusedByKey.set(rec.key, { text, key: rec.key, reason: "unexpected content" });
      } else {
        refusedByKey.delete(rec.key);
        live.set(rec.key, { value, offset: start, length: end + 1 - start });
      }
    }
    start = end + 1;
  }
  for (const { line, at } of unreadable) {
    const k = line.key;
    if (k !== null && ((lastGood.get(k) ?? -1) > at || live.has(k) || refusedByKey.has(k))) line.key = null;
  }
  return {
    live,
    damaged: [...unreadable.map((u) => u.line), ...refusedByKey.values()],
    wholeBytes: start,
    tornBytes: bytes.length - start,
  };
}

/** Where a line is: its first byte and its length with the newline. */
export interface LinePlace {
  offset: number;
  length: number;
}

export interface JoinedLines {
  data: Buffer;
  index: Map<string, LinePlace>;
}

/** Lines laid end to end, and where each key's line lands: known here, so never re-parsed. */
export function joinLines(lines: [string, Buffer][]): JoinedLines {
  const index = new Map<string, LinePlace>();
  let offset = 0;
  for (const [key, line] of lines) {
    index.set(key, { offset, length: line.length });
    offset += line.length;
  }
  return { data: Buffer.concat(lines.map(([, line]) => line)), index };
}
