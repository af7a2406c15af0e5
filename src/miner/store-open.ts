// What a durable store finds on disk when it opens (docs/architecture.md#durability-rules): its
// log replayed, records left as one file each by earlier versions, and the live lines laid end to
// end as the log should hold them. Reading only (leftover temp files aside): durable-store.ts
// decides whether to rewrite the log.
import { promises as fs } from "node:fs";
import { join } from "node:path";
import { type LegacyRecords, readLegacyRecords } from "./legacy-records.js";
import { encodeRecord, type JoinedLines, joinLines, type LogContents, readLog } from "./record-log.js";

export interface FoundOnDisk<T> {
  /** The log as read (empty when there is none yet). */
  bytes: Buffer;
  contents: LogContents<T>;
  legacy: LegacyRecords<T>;
  /** The live records, the log's first, then the old files' the log does not hold. */
  live: JoinedLines;
}

export async function readStoreFiles<T>(
  dir: string,
  logPath: string,
  tmpDir: string,
  validate: (value: unknown) => T | null,
): Promise<FoundOnDisk<T>> {
  await fs.mkdir(tmpDir, { recursive: true, mode: 0o700 });
  // Leftover temp files are writes that never reached their rename: not records.
  for (const name of await fs.readdir(tmpDir)) await fs.rm(join(tmpDir, name), { force: true });
  const legacy = await readLegacyRecords(dir, validate);
  const bytes = await fs.readFile(logPath).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return Buffer.alloc(0);
    throw err;
  });
  const contents = readLog(bytes, validate);
  const lines: [string, Buffer][] = [];
  for (const [key, r] of contents.live) lines.push([key, bytes.subarray(r.offset, r.offset + r.length)]);
  // The log is newer than any file an earlier version left: it wins for a key in both.
  for (const e of legacy.entries)
    if (!contents.live.has(e.key))
      lines.push([e.key, encodeRecord({ op: "put", key: e.key, value: e.value })]);
  return { bytes, contents, legacy, live: joinLines(lines) };
}
