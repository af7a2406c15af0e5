// Records left by earlier versions of the miner (docs/architecture.md#durability-rules): one `<hash>.json` file
// per record, `{"key": ..., "value": ...}`. A store opening a directory that still has them takes
// them into its log, then deletes them, so an upgrade loses no result and no claim.
import { promises as fs } from "node:fs";
import { join } from "node:path";
import { topLevelStringMember } from "../coordinator/json-span.js";

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
