// Whether a miner is alive and ready, from facts the loop reports (a pure function: /healthz and
// /readyz, and the supervisor's view of its workers). Live: not failed, the poll loop moved
// recently (or is waiting on full slots), and no job has outlived its deadline plus the abort
// grace (a wedged backend). Ready: registered, a model to serve, and a writable state directory.
import type { MinerHealth, MinerSettings } from "./types.js";

export interface HealthFacts {
  /** The fatal error's message, when the miner is stopping after one. */
  fatal: string | null;
  deadlines: { jobId: string; deadlineAt: number }[];
  loopTickAt: number;
  stopping: boolean;
  registered: boolean;
  servableModels: number;
  stateWritable: boolean;
}

export function minerHealth(
  f: HealthFacts,
  s: Pick<MinerSettings, "abortGraceMs" | "concurrency" | "idlePollIntervalMs" | "longPollSeconds">,
  now: number,
): MinerHealth {
  const reasons: string[] = [];
  let live = true;
  if (f.fatal !== null) {
    live = false;
    reasons.push(`stopping after a fatal error: ${f.fatal}`);
  }
  const wedgeAfter = s.abortGraceMs + 5000;
  for (const { jobId, deadlineAt } of f.deadlines) {
    if (now > deadlineAt + wedgeAfter) {
      live = false;
      reasons.push(
        `job ${jobId} is ${Math.round((now - deadlineAt) / 1000)} s past its deadline: the backend is wedged`,
      );
    }
  }
  const slotsFull = f.deadlines.length >= s.concurrency;
  const stalledFor = now - f.loopTickAt;
  const loopLimit = Math.max(120_000, 3 * s.idlePollIntervalMs) + s.longPollSeconds * 1000;
  if (!slotsFull && !f.stopping && f.registered && stalledFor > loopLimit) {
    live = false;
    reasons.push(`the poll loop has not moved for ${Math.round(stalledFor / 1000)} s`);
  }
  let ready = live && !f.stopping;
  if (!f.registered) {
    ready = false;
    reasons.push("not registered with the coordinator");
  }
  if (f.servableModels === 0) {
    ready = false;
    reasons.push("no model can be served");
  }
  if (!f.stateWritable) {
    ready = false;
    reasons.push("the state directory cannot be written");
  }
  if (f.stopping) reasons.push("stopping");
  return { live, ready, reasons };
}
