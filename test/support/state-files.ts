// Reading a miner's durable state from outside, as an operator (or a test in another process)
// would: the keys a store's log holds now, without opening (and so rewriting) it; and ways to
// make writes to files already open fail.
import { execFileSync } from "node:child_process";
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LOG_NAME } from "../../src/miner/durable-store.js";
import { readLog } from "../../src/miner/record-log.js";

/** Keys live in the store kept in `dir` (outbox or journal), sorted; [] when it has no log yet. */
export function storedKeys(dir: string): string[] {
  const path = join(dir, LOG_NAME);
  if (!existsSync(path)) return [];
  return [...readLog(readFileSync(path), (v) => v).live.keys()].sort();
}

type FileHandleMethod = (...args: unknown[]) => Promise<unknown>;

/**
 * The methods every FileHandle shares (write, datasync, truncate…): spy on them to make a disk
 * fail under a file that is already open.
 */
export async function fileHandleMethods(): Promise<Record<string, FileHandleMethod>> {
  const fh = await open(tmpdir(), "r");
  await fh.close();
  return Object.getPrototypeOf(fh) as Record<string, FileHandleMethod>;
}

/**
 * Make a file unwritable in a way root cannot bypass (the tests run as root, so chmod would not
 * do): the immutable attribute. Writes on descriptors already open fail too (EPERM).
 */
export function setImmutable(path: string, on: boolean): void {
  execFileSync("chattr", [on ? "+i" : "-i", path], { stdio: "ignore" });
}

/** Whether this host can set the immutable attribute on a file under tmpdir() (root, ext4/xfs/btrfs). */
export const canSetImmutable: boolean = (() => {
  if (process.platform !== "linux") return false;
  const dir = mkdtempSync(join(tmpdir(), "immutable-probe-"));
  const file = join(dir, "f");
  try {
    writeFileSync(file, "x");
    setImmutable(file, true);
    try {
      appendFileSync(file, "y");
      return false;
    } catch {
      return true;
    } finally {
      setImmutable(file, false);
    }
  } catch {
    return false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
})();
