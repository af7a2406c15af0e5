// The receipts log: one JSON line per receipt (the miner's own and the coordinator's) and per job
// failed back (kind failure, for the earnings report), appended with a single O_APPEND write so
// concurrent appends never interleave within a line.

import { type FileHandle, mkdir, open, readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { monotonicNow } from "../clock.js";
import { appendNow } from "../file-io.js";
import { JsonFloat, type JsonValue, parseJsonLossless, stringifyJson } from "./json.js";
import { receiptModel } from "./receipt.js";

export type ReceiptKind = "miner" | "coordinator";

/** What a miner receipt's result billed, as sent (units, their type, the unit price asked or null). */
export interface BilledRecord {
  units: number;
  unit_type: string;
  unit_price: number | null;
}

export interface ReceiptLogEntry {
  kind: ReceiptKind | "failure";
  jobId: string;
  /** A failure line: null (its error code is `reason`). */
  receipt: unknown;
  /** Miner receipts: what the result was billed at when sent (earnings reconcile against it). */
  billed?: BilledRecord | undefined;
  /** null: not checked (no key to check it with). */
  verified: boolean | null;
  reason?: string | undefined;
  /** ISO time or unix milliseconds. */
  at: string | number;
}

/** Largest receipt line accepted, both ways (a coordinator receipt is a few hundred bytes). */
const MAX_LINE_CHARS = 256 * 1024;
/** Lines written together at most (bytes): one write call. */
const MAX_BATCH_BYTES = 384 * 1024;
/**
 * The log stays open between writes (an open and a close per write cost two thread-pool round
 * trips), closed after a second without writes and reopened every 5 s, so a log rotated by
 * renaming is left within 5 s.
 */
const IDLE_CLOSE_MS = 1000;
const REOPEN_AFTER_MS = 5000;

export interface ReadResult {
  entries: ReceiptLogEntry[];
  /** Lines that are not entries (e.g. a torn last line after a crash). */
  skipped: number;
}

export class ReceiptLog {
  private dirReady: Promise<void> | null = null;
  private fh: FileHandle | null = null;
  private openedAt = 0;
  private idleTimer: ReturnType<typeof setTimeout> | null = null;
  /** A write failed part way: the file may end inside a line. */
  private cut = false;
  /** Lines waiting for the write in progress to end; they go out together in the next one. */
  private pending: { lines: string[]; bytes: number; done: Promise<void> } | null = null;
  private tail: Promise<void> = Promise.resolve();

  constructor(readonly path: string) {}

  /**
   * Append one entry. Entries that arrive while a write is in progress are written together in
   * the next (one write for many lines, while the log is being opened); each call resolves once its line is written.
   */
  append(entry: ReceiptLogEntry): Promise<void> {
    const record: Record<string, unknown> = {
      at: entry.at,
      kind: entry.kind,
      jobId: entry.jobId,
      verified: entry.verified,
    };
    if (entry.reason !== undefined) record["reason"] = entry.reason;
    if (entry.billed !== undefined) record["billed"] = { ...entry.billed };
    record["receipt"] = entry.receipt;
    let line: string;
    try {
      // stringifyJson keeps big integers and `1.0` exact, so logged receipts still verify.
      line = `${stringifyJson(record)}\n`;
    } catch (err) {
      return Promise.reject(err);
    }
    if (line.length > MAX_LINE_CHARS)
      return Promise.reject(new RangeError(`receipt log line over ${MAX_LINE_CHARS} characters`));
    // A batch stays small enough to go out in one write call.
    const bytes = Buffer.byteLength(line);
    if (this.pending && this.pending.bytes + bytes <= MAX_BATCH_BYTES) {
      this.pending.lines.push(line);
      this.pending.bytes += bytes;
      return this.pending.done;
    }
    const lines = [line];
    const batch = { lines, bytes, done: Promise.resolve() };
    batch.done = this.tail.then(() => {
      if (this.pending === batch) this.pending = null; // from here on, new lines wait for the next write
      return this.write(lines.join(""));
    });
    this.pending = batch;
    const done = batch.done;
    this.tail = done.catch(() => undefined);
    return done;
  }

  private async write(text: string): Promise<void> {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    try {
      // Monotonic: after a wall-clock step back the file would be kept open (rotation missed) for hours.
      if (this.fh && monotonicNow() - this.openedAt > REOPEN_AFTER_MS) await this.closeFile();
      if (!this.fh) {
        // The directory once per log, not once per write.
        this.dirReady ??= mkdir(dirname(this.path), { recursive: true, mode: 0o700 }).then(() => undefined);
        await this.dirReady;
        this.fh = await open(this.path, "a", 0o600);
        this.openedAt = monotonicNow();
      }
      // One O_APPEND write: concurrent writers (another process) never interleave within a line.
      // After a failed write the file may end in part of a line: start on a line of our own, so
      // that only the cut line is lost (read() skips it), not the next one glued onto it.
      const data = Buffer.from(this.cut ? `\n${text}` : text, "utf8");
      this.cut = true;
      appendNow(this.fh, data);
      this.cut = false;
    } catch (err) {
      await this.closeFile();
      this.dirReady = null; // e.g. a full disk, or the directory gone: make it again next time
      // A write on the open file names none: name the log, so the miner knows which file to test.
      if (typeof err === "object" && err !== null && !("path" in err))
        Object.assign(err, { path: this.path });
      throw err;
    }
    this.idleTimer = setTimeout(() => void this.closeFile(), IDLE_CLOSE_MS);
    this.idleTimer.unref();
  }

  /** Write what is pending, then close the file (the log can still be appended to: it reopens). */
  async close(): Promise<void> {
    await this.tail;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    await this.closeFile();
  }

  private async closeFile(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    await fh?.close().catch(() => undefined);
  }

  /** Every entry; a missing log is an empty one. */
  async read(): Promise<ReadResult> {
    let text: string;
    try {
      text = await readFile(this.path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { entries: [], skipped: 0 };
      throw err;
    }
    const entries: ReceiptLogEntry[] = [];
    let skipped = 0;
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      const entry = parseReceiptLine(line);
      if (entry) entries.push(entry);
      else skipped++;
    }
    return { entries, skipped };
  }
}

/** One receipts-log line as an entry, or null when it is not one (torn, foreign, not JSON). */
export function parseReceiptLine(line: string): ReceiptLogEntry | null {
  let v: JsonValue;
  try {
    v = parseJsonLossless(line, { maxLength: MAX_LINE_CHARS });
  } catch {
    return null;
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) return null;
  const rec = v as Record<string, JsonValue>;
  const kind = rec["kind"];
  const verified = rec["verified"];
  const at = rec["at"];
  if (kind !== "miner" && kind !== "coordinator" && kind !== "failure") return null;
  if (typeof rec["jobId"] !== "string") return null;
  if (verified !== true && verified !== false && verified !== null) return null;
  if (typeof at !== "string" && typeof at !== "number") return null;
  const entry: ReceiptLogEntry = { kind, jobId: rec["jobId"], receipt: rec["receipt"] ?? null, verified, at };
  if (typeof rec["reason"] === "string") entry.reason = rec["reason"];
  const billed = billedOf(rec["billed"]);
  if (billed) entry.billed = billed;
  return entry;
}

function billedOf(v: JsonValue | undefined): BilledRecord | undefined {
  if (typeof v !== "object" || v === null || Array.isArray(v) || v instanceof JsonFloat) return undefined;
  const o = v as Record<string, JsonValue>;
  const units = plainNumber(o["units"]);
  const rawPrice = o["unit_price"];
  const price = rawPrice === null ? null : plainNumber(rawPrice);
  if (units === null || typeof o["unit_type"] !== "string") return undefined;
  if (rawPrice !== null && price === null) return undefined;
  return { units, unit_type: o["unit_type"], unit_price: price };
}

function plainNumber(v: JsonValue | undefined): number | null {
  if (typeof v === "number" && Number.isFinite(v)) return v;
  if (v instanceof JsonFloat && Number.isFinite(v.value)) return v.value;
  return null;
}

export interface ReceiptSummary {
  count: number;
  byKind: Record<ReceiptKind, number>;
  verified: number;
  failed: number;
  unverified: number;
  /** Units per model, per kind (miner and coordinator receipts describe the same jobs). */
  unitsByModel: Record<string, Record<ReceiptKind, number>>;
  /** Jobs failed back (failure lines; not receipts). */
  failures: number;
  skippedLines: number;
}

function unitsOf(v: unknown): number {
  if (typeof v === "number" && Number.isFinite(v)) return v;
  if (typeof v === "bigint") return Number(v);
  if (typeof v === "object" && v !== null && "value" in v && typeof v.value === "number") return v.value;
  return 0;
}

export function summarizeReceipts(read: ReadResult): ReceiptSummary {
  const receipts = read.entries.filter((e) => e.kind !== "failure");
  const s: ReceiptSummary = {
    count: receipts.length,
    byKind: { miner: 0, coordinator: 0 },
    verified: 0,
    failed: 0,
    unverified: 0,
    // null prototype: model names come from receipts (a "__proto__" model must stay a key)
    unitsByModel: Object.create(null) as ReceiptSummary["unitsByModel"],
    failures: read.entries.length - receipts.length,
    skippedLines: read.skipped,
  };
  for (const e of receipts) {
    if (e.kind === "failure") continue;
    s.byKind[e.kind]++;
    if (e.verified === true) s.verified++;
    else if (e.verified === false) s.failed++;
    else s.unverified++;
    const r =
      typeof e.receipt === "object" && e.receipt !== null ? (e.receipt as Record<string, unknown>) : {};
    const model = receiptModel(r) ?? "(unknown)";
    let byModel = Object.hasOwn(s.unitsByModel, model) ? s.unitsByModel[model] : undefined;
    if (!byModel) {
      byModel = { miner: 0, coordinator: 0 };
      s.unitsByModel[model] = byModel;
    }
    byModel[e.kind] += unitsOf(r["units"]);
  }
  return s;
}
