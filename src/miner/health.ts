// Whether a miner is alive and ready, from facts the loop and the backend report (a pure function:
// /healthz and /readyz, and the supervisor's view of its workers), with Kubernetes' meaning.
// Live fails only when the process is stuck: work that should move has not, each kind past its own
// deadline (a preflight, a load, the warm-up, the poll loop, a job past its deadline); a long load
// that moves is alive. Ready: registered, a model to serve, a writable state directory, and polls
// being answered. Every time here is on the monotonic clock (src/clock.ts).
import { z } from "zod";
import type { BackendActivity, BackendProgress } from "../backends/activity.js";
import type { HealthLimits } from "./health-limits.js";

/**
 * For /healthz and /readyz: is the loop alive, and can it take jobs? The one definition: a
 * worker's health crosses the IPC channel validated by this schema (src/fleet/ipc.ts).
 */
export const minerHealthSchema = z.object({
  live: z.boolean(),
  ready: z.boolean(),
  /** Why not, in words (empty when both hold). */
  reasons: z.array(z.string().max(2000)).max(100),
});
export type MinerHealth = z.infer<typeof minerHealthSchema>;

export interface HealthFacts {
  /** The fatal error's message, when the miner is stopping after one. */
  fatal: string | null;
  /** Jobs running, each with its deadline. */
  jobs: { jobId: string; deadlineAt: number }[];
  /**
   * When the poll loop must move next (the wait it planned plus its limit), or null while it
   * waits on work with its own deadline (registering, warm-up, full slots) or has not started.
   */
  pollDueBy: number | null;
  /** When the poll loop last moved. */
  pollMovedAt: number;
  /** Warm-up under way: when it started (later progress comes from the backend). */
  warmUp: { startedAt: number } | null;
  /** What the backend is busy with (preflights, loads), if it says. */
  backend: BackendProgress | null;
  /** Null while polls are answered; else why the miner is not polling. */
  notPolling: string | null;
  stopping: boolean;
  registered: boolean;
  servableModels: number;
  stateWritable: boolean;
}

const secs = (ms: number) => Math.round(ms / 1000);

function describe(a: BackendActivity): string {
  if (a.kind === "runtime") return "starting the inference runtime";
  const pct = a.fraction === null ? "" : ` (${Math.floor(a.fraction * 100)} %)`;
  return a.kind === "preflight"
    ? `the preflight of model ${a.model}${pct}`
    : `loading model ${a.model}${pct}`;
}

/** How long `a` may go without progress. */
export function stallLimitMs(a: BackendActivity, l: HealthLimits): number {
  if (a.kind === "preflight") return l.preflightStallMs;
  if (a.reportsProgress) return l.loadStallMs;
  return l.loadStallMs + Math.round((l.loadMsPerGiB * Math.max(0, a.sizeBytes ?? 0)) / 2 ** 30);
}

export function minerHealth(
  f: HealthFacts,
  l: HealthLimits & { abortGraceMs: number },
  now: number,
): MinerHealth {
  const reasons: string[] = [];
  let live = true;
  const stuck = (why: string) => {
    live = false;
    reasons.push(why);
  };
  if (f.fatal !== null) stuck(`stopping after a fatal error: ${f.fatal}`);
  const overrun = l.jobOverrunMs ?? l.abortGraceMs + 5000;
  for (const { jobId, deadlineAt } of f.jobs) {
    if (now > deadlineAt + overrun)
      stuck(`job ${jobId} is ${secs(now - deadlineAt)} s past its deadline: the backend is wedged`);
  }
  const active = f.backend?.active ?? [];
  /** What moves, for /readyz's words while the miner is not polling yet. */
  const underWay: string[] = [];
  for (const a of active) {
    const idle = now - a.progressAt;
    const limit = stallLimitMs(a, l);
    if (idle > limit)
      stuck(`${describe(a)} has made no progress for ${secs(idle)} s (limit ${secs(limit)} s)`);
    else underWay.push(`${describe(a)}: under way for ${secs(now - a.startedAt)} s`);
  }
  if (f.warmUp && active.length === 0) {
    // Between backend steps (admission, priming): the last step's end is the last progress.
    const last = Math.max(f.warmUp.startedAt, f.backend?.lastProgressAt ?? Number.NEGATIVE_INFINITY);
    if (now - last > l.warmUpStallMs) stuck(`warm-up has made no progress for ${secs(now - last)} s`);
  }
  if (!f.stopping && f.pollDueBy !== null && now > f.pollDueBy)
    stuck(`the poll loop has not moved for ${secs(now - f.pollMovedAt)} s`);

  let ready = live && !f.stopping;
  const notReady = (why: string) => {
    ready = false;
    reasons.push(why);
  };
  if (!f.registered) notReady("not registered with the coordinator");
  if (f.servableModels === 0) notReady("no model can be served");
  if (!f.stateWritable) notReady("the state directory cannot be written");
  if (f.notPolling !== null && f.registered && !f.stopping) {
    notReady(f.notPolling);
    reasons.push(...underWay);
  }
  if (f.stopping) reasons.push("stopping");
  return { live, ready, reasons };
}
