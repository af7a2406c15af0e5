// One owner per state directory (docs/operations.md): an exclusive kernel lock on <dir>/lock, held
// for the life of the process. A second miner on the same directory (a second unit, a container
// restarted beside the old one) would resume the first one's jobs and submit them twice.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { loadAddon } from "./gpu/addon.js";

export type StateLock =
  | { ok: true; path: string; release(): void }
  | { ok: false; path: string; holderPid: number | null; message: string };

export const lockFileOf = (stateDir: string) => join(stateDir, "lock");

/**
 * Take the directory's lock or say who holds it. Without the addon (which holds the only lock call
 * Node lacks) the miner runs unlocked, and says so: `null`.
 */
export function lockStateDir(stateDir: string): StateLock | null {
  const load = loadAddon();
  if (!load.ok || typeof load.addon.lockFile !== "function") return null;
  const path = lockFileOf(stateDir);
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const r = load.addon.lockFile(path);
  if (r.locked && r.fd !== null) {
    const fd = r.fd;
    let held = true;
    return {
      ok: true,
      path,
      release() {
        if (held) load.addon.unlockFile?.(fd);
        held = false;
      },
    };
  }
  if (r.error !== null)
    return { ok: false, path, holderPid: null, message: `cannot lock ${path}: ${r.error}` };
  const who =
    r.holderPid !== null ? `PID ${r.holderPid}` : "a process this one cannot see (another PID namespace?)";
  return {
    ok: false,
    path,
    holderPid: r.holderPid,
    message: `the state directory ${stateDir} is in use by another miner (${who}): stop that one first, or give this one its own --state-dir`,
  };
}
