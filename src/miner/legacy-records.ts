// Records left by earlier versions of the miner (docs/architecture.md#durability-rules): one `<hash>.json` file
// per record, `{"key": ..., "value": ...}`. A store opening a directory that still has them takes
// them into its log, then deletes them, so an upgrade loses no result and no claim.
import { promises as fs } from "node:fs";
import { join } from "node:path";
import { topLevelStringMember } from "../coordinator/json-span.js";
import { readLog } from "./record-log.js";

/** A record that could not be read back, kept for the operator. */
export interface CorruptRecord {
  /** Where it now is (a file renamed `.corrupt`, or the store's `records.corrupt`). */
  path: string;
  /** Its key, when the damaged record still names it. */
  key: string | null;
  reason: string;
}

export interface LegacyRecords<T> {
  entries: { key: string; value: T }[];
  /** The files read, to delete once their records are durable in the log. */
  files: string[];
  corrupt: CorruptRecord[];
}

/** Read the old files; an unreadable one is renamed `.corrupt` (never deleted) and returned. */
export async function readLegacyRecords<T>(
  dir: string,
  validate: (value: unknown) => T | null,
): Promise<LegacyRecords<T>> {
  const out: LegacyRecords<T> = { entries: [], files: [], corrupt: [] };
  const names = (await fs.readdir(dir)).filter((n) => n.endsWith(".json")).sort();
  for (const name of names) {
    const path = join(dir, name);
    let text = "";
    try {
      text = await fs.readFile(path, "utf8");
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed === "object" && parsed !== null && "key" in parsed && "value" in parsed) {
        const key = (parsed as { key: unknown }).key;
        const value = validate((parsed as { value: unknown }).value);
        if (typeof key === "string" && value !== null) {
          out.entries.push({ key, value });
          out.files.push(path);
          continue;
        }
      }
      throw new Error("unexpected shape");
    } catch (err) {
      const movedTo = `${path}.corrupt`;
      const moved = await fs.rename(path, movedTo).then(
        () => true,
        () => false,
      );
      out.corrupt.push({
        path: moved ? movedTo : path,
        key: topLevelStringMember(text, "key"),
        reason: (err as NodeJS.ErrnoException).code ?? "unreadable or unexpected content",
      });
    }
  }
  return out;
}

/**
 * What a store's directory holds, read without opening the store (its open failed: a full disk
 * at start), so it can still be delivered: the log first, then the files an earlier version left.
 */
export async function readWithoutOpening<T>(
  logPath: string,
  dir: string,
  validate: (value: unknown) => T | null,
): Promise<{ entries: { key: string; value: T }[]; corrupt: CorruptRecord[] }> {
  const bytes = await fs.readFile(logPath).catch(() => Buffer.alloc(0));
  const { live } = readLog(bytes, validate);
  const entries = [...live].map(([key, r]) => ({ key, value: r.value }));
  const legacy = await readLegacyRecords(dir, validate).catch(() => null);
  for (const e of legacy?.entries ?? []) if (!live.has(e.key)) entries.push(e);
  return { entries, corrupt: legacy?.corrupt ?? [] };
}
