// The whole host's receipts, read for the earnings report: the host's state directory and every
// worker's (`workers/<gpu uuid>/`, one per GPU on a multi-GPU host, src/fleet/plan.ts), each
// receipts log line by line. A line that is not an entry (torn by a crash, written by something
// else) is reported with its file and line number, never a crash.
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { stateFiles } from "../paths.js";
import { parseReceiptLine, type ReceiptLogEntry } from "../receipts/log.js";

/** One state directory of the host: the host's own ("host") or a worker's (its directory name). */
export interface StateSource {
  /** The GPU it mines on: a worker's directory name (its first GPU's UUID), "host" for the top one. */
  gpu: string;
  dir: string;
}

export interface UnreadableLine {
  file: string;
  line: number;
  reason: string;
}

export interface LedgerEntry extends ReceiptLogEntry {
  gpu: string;
  file: string;
  line: number;
}

export interface Ledger {
  sources: StateSource[];
  entries: LedgerEntry[];
  unreadable: UnreadableLine[];
}

/** Largest receipts log read whole (a year of a busy GPU is far below). */
const MAX_LOG_BYTES = 512 * 1024 * 1024;

/** The host directory, then each worker directory under `workers/`, sorted by name. */
export async function stateSources(stateDir: string): Promise<StateSource[]> {
  const sources: StateSource[] = [{ gpu: "host", dir: stateDir }];
  let names: string[];
  try {
    names = await readdir(join(stateDir, "workers"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return sources;
    throw err;
  }
  for (const name of names.sort()) {
    const dir = join(stateDir, "workers", name);
    if ((await stat(dir).catch(() => null))?.isDirectory()) sources.push({ gpu: name, dir });
  }
  return sources;
}

function why(line: string): string {
  try {
    JSON.parse(line);
    return "JSON, but not a receipts-log entry";
  } catch {
    return "not JSON (a torn or foreign line)";
  }
}

/** Every entry of every receipts log on the host; a missing log is an empty one. */
export async function readLedger(stateDir: string): Promise<Ledger> {
  const sources = await stateSources(stateDir);
  const entries: LedgerEntry[] = [];
  const unreadable: UnreadableLine[] = [];
  for (const src of sources) {
    const file = stateFiles.receiptsLog(src.dir);
    let text: string;
    try {
      const st = await stat(file);
      if (!st.isFile()) {
        unreadable.push({ file, line: 0, reason: "not a regular file" });
        continue;
      }
      if (st.size > MAX_LOG_BYTES) {
        unreadable.push({ file, line: 0, reason: `over ${MAX_LOG_BYTES} bytes: not read` });
        continue;
      }
      text = await readFile(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw err;
    }
    const lines = text.split("\n");
    lines.forEach((line, i) => {
      if (line.trim() === "") return;
      const entry = parseReceiptLine(line);
      if (entry) entries.push({ ...entry, gpu: src.gpu, file, line: i + 1 });
      else unreadable.push({ file, line: i + 1, reason: why(line) });
    });
  }
  return { sources, entries, unreadable };
}
