// Whether a child process is doing anything, from the kernel's counters (Linux /proc): CPU time
// and major page faults, the latter growing while a memory-mapped model is read from disk. A
// preflight evaluating its first token reports nothing itself for minutes on a cold 40 GiB file;
// these counters still move. A stopped or deadlocked child's do not.
import { readFileSync } from "node:fs";

/** utime + stime (clock ticks) + major faults of `pid`, or null where /proc cannot tell. */
export function workDone(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so count from the last ')'.
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state): majflt is field 12, utime 14, stime 15.
  const [majflt, utime, stime] = [rest[9], rest[11], rest[12]].map(Number);
  if (![majflt, utime, stime].every((n) => Number.isFinite(n))) return null;
  return majflt! + utime! + stime!;
}
