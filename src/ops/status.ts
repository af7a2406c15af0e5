// Why no jobs: per worker, what happened in the last minutes (polls, empty polls, 429s, hand-outs,
// jobs refused by reason, results, failures, coordinator errors) from the MinerEvent stream the
// workers already send the supervisor, over a sliding window, and one verdict line an operator
// understands. `statusVerdict` is pure (counters and facts in, one line out) and unit-tested.
import type { MinerEvent } from "./events.js";

/** Screening refusals (src/miner/screening.ts): a job this miner would not run, not a failure. */
const REFUSALS = new Set([
  "invalid_payload",
  "unsupported_job_type",
  "invalid_prompt",
  "prompt_too_long",
  "invalid_model",
  "invalid_max_tokens",
  "invalid_parameter",
  "model_not_found",
  "constraints_unmet",
]);

export interface StatusCounters {
  polls: number;
  emptyPolls: number;
  rateLimited: number;
  coordinatorErrors: number;
  handouts: number;
  /** Hand-outs that could not be used (over the size cap, unparsable) or were refused, by reason. */
  refused: Record<string, number>;
  /** Jobs that ran and failed, by error code. */
  failures: Record<string, number>;
  completed: number;
  /** Result deliveries, by the coordinator's answer. */
  results: Record<string, number>;
}

/** What else the verdict needs to know about a worker, besides its counters. */
export interface StatusFacts {
  /** Workers sharing the host's poll budget. */
  workers: number;
  windowMs: number;
  /** Why this worker's card is drained, when it is ("GPU 2 drained: Xid 79: ..."). */
  drained: string | null;
  stateWritable: boolean | null;
  /** The worker stopped because the coordinator refused our credentials. */
  credentialsRefused: boolean;
  /** The worker gave up for another reason (its exit code), or null. */
  gaveUp: number | null;
}

export function emptyCounters(): StatusCounters {
  return {
    polls: 0,
    emptyPolls: 0,
    rateLimited: 0,
    coordinatorErrors: 0,
    handouts: 0,
    refused: {},
    failures: {},
    completed: 0,
    results: {},
  };
}

const total = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
const top = (r: Record<string, number>) => Object.entries(r).sort((a, b) => b[1] - a[1])[0]?.[0] ?? "";
const mins = (ms: number) => `${Math.max(1, Math.round(ms / 60_000))} min`;

/** One line: why this worker gets (or got no) jobs lately, worst first. */
export function statusVerdict(c: StatusCounters, f: StatusFacts): string {
  if (f.credentialsRefused)
    return "the coordinator refuses our credentials (check --api-key-file and --miner-id)";
  if (f.stateWritable === false)
    return "state directory full or read-only: mining paused until it takes writes";
  if (f.drained) return f.drained;
  if (f.gaveUp !== null) return `the worker gave up (exit ${f.gaveUp}): see its log`;
  if (c.polls === 0) return `no polls in the last ${mins(f.windowMs)} (starting, or every slot busy)`;
  if (c.rateLimited > 0 && c.rateLimited * 4 >= c.polls)
    return f.workers > 1
      ? `polls refused: rate limit shared by ${f.workers} workers (${c.rateLimited} of ${c.polls} polls answered 429)`
      : `polls refused: rate limit (${c.rateLimited} of ${c.polls} polls answered 429)`;
  if (c.coordinatorErrors * 2 >= c.polls)
    return `the coordinator fails our polls (${c.coordinatorErrors} of ${c.polls} errors or timeouts)`;
  const refused = total(c.refused);
  if (c.handouts === 0 && refused === 0)
    return `the coordinator had no work for your models in ${c.emptyPolls} polls`;
  if (refused > 0 && refused >= c.handouts)
    return `jobs handed out but refused here: ${refused} (most: ${top(c.refused)})`;
  const failed = total(c.failures);
  if (failed > 0 && failed >= c.completed)
    return `jobs fail: ${failed} of ${failed + c.completed} (most: ${top(c.failures)})`;
  return `mining: ${c.completed} jobs completed, ${c.results["accepted"] ?? 0} results accepted in ${mins(f.windowMs)}`;
}

/** Adds one event to the counters (a sliding window replays them). */
export function count(c: StatusCounters, e: MinerEvent): void {
  switch (e.type) {
    case "poll":
      c.polls++;
      if (e.result === "empty") c.emptyPolls++;
      else if (e.result === "rate_limited") c.rateLimited++;
      else if (e.result === "error") c.coordinatorErrors++;
      else if (e.result === "job") c.handouts++;
      else if (e.result === "unusable") {
        c.handouts++;
        c.refused["unusable"] = (c.refused["unusable"] ?? 0) + 1;
      }
      return;
    case "job_failed": {
      const into = REFUSALS.has(e.errorCode) ? c.refused : c.failures;
      into[e.errorCode] = (into[e.errorCode] ?? 0) + 1;
      return;
    }
    case "job_completed":
      c.completed++;
      return;
    case "result_delivered":
      c.results[e.answer] = (c.results[e.answer] ?? 0) + 1;
      return;
    case "job_cancelled":
    case "inference_runtime":
      return;
  }
}

/** The last `windowMs` of each worker's events (bounded: the oldest go first). */
export class StatusWindow {
  private readonly events = new Map<string, { at: number; e: MinerEvent }[]>();

  constructor(
    readonly windowMs = 10 * 60_000,
    private readonly now: () => number = Date.now,
    private readonly maxPerWorker = 20_000,
  ) {}

  add(key: string, e: MinerEvent): void {
    if (e.type === "inference_runtime") return;
    const list = this.events.get(key) ?? [];
    list.push({ at: this.now(), e });
    if (list.length > this.maxPerWorker) list.splice(0, list.length - this.maxPerWorker);
    this.events.set(key, list);
  }

  counters(key: string, windowMs = this.windowMs): StatusCounters {
    const from = this.now() - windowMs;
    const list = (this.events.get(key) ?? []).filter((x) => x.at >= from);
    if (windowMs === this.windowMs) this.events.set(key, list); // forget what left the window
    const c = emptyCounters();
    for (const x of list) count(c, x.e);
    return c;
  }

  /** When this worker last had a job handed out (ms since epoch), within the window. */
  lastHandout(key: string): number | null {
    const list = this.events.get(key) ?? [];
    for (let i = list.length - 1; i >= 0; i--) {
      const x = list[i]!;
      if (x.e.type === "poll" && x.e.result === "job") return x.at;
    }
    return null;
  }
}
