// One round of polls. Usually one poll; in a backlog (the last round brought a job) one per free
// slot, as the budget allows: across a network each poll is a round trip, and polling one at a
// time would leave slots idle while jobs wait. Backlog polls ask for no wait, so an emptied queue
// answers them at once. Claim-dialect polls would race each other for the same listed job,
// so that dialect always polls one at a time. (docs/operations.md#polling-coordinator-load-vs-pickup)
import { CoordinatorError, UnusableJobError } from "../coordinator/errors.js";
import type { CoordinatorClient, Job } from "../coordinator/types.js";
import type { PollResult } from "../ops/events.js";
import type { PollBudget } from "./poll-budget.js";

export interface PollRoundOptions {
  /** The long-poll wait an idle round's poll asks for (a backlog round asks for none). */
  longPollSeconds: number;
  /** Slots free now: the most polls a backlog round sends. */
  freeSlots: number;
  backlog: boolean;
  signal: AbortSignal;
  now: number;
}

export interface PollRound {
  /** One per poll sent, in order: a job, null (none), or what it threw. */
  outcomes: PromiseSettledResult<Job | null>[];
  /** The jobs handed over. */
  jobs: Job[];
  /** Jobs handed over that cannot be used: ours, to be failed back. */
  unusable: UnusableJobError[];
  /** The first other failure, if any: what the retry rule decides on. */
  error: unknown;
}

/** What one poll brought, for the poll metrics. */
export function pollOutcome(o: PromiseSettledResult<Job | null>): PollResult {
  if (o.status === "fulfilled") return o.value ? "job" : "empty";
  if (o.reason instanceof UnusableJobError) return "unusable";
  if (o.reason instanceof CoordinatorError && o.reason.kind === "rate_limited") return "rate_limited";
  return "error";
}

/** Spend the budget for each poll sent; the caller has checked the first one may go. */
export async function pollRound(
  client: CoordinatorClient,
  budget: PollBudget,
  o: PollRoundOptions,
): Promise<PollRound> {
  const polls: Promise<Job | null>[] = [];
  budget.spend(o.now);
  // In a backlog every poll asks for no wait: the round settles as a whole, and one poll held
  // open on an emptied queue would keep the jobs the others brought from starting.
  polls.push(client.poll(o.backlog ? 0 : o.longPollSeconds, o.signal));
  if (o.backlog && client.protocol === "aitbc") {
    while (polls.length < o.freeSlots && budget.waitMs(o.now) === 0) {
      budget.spend(o.now);
      polls.push(client.poll(0, o.signal));
    }
  }
  const outcomes = await Promise.allSettled(polls);
  const round: PollRound = { outcomes, jobs: [], unusable: [], error: undefined };
  for (const o of outcomes) {
    if (o.status === "fulfilled") {
      if (o.value) round.jobs.push(o.value);
    } else if (o.reason instanceof UnusableJobError) {
      round.unusable.push(o.reason);
    } else if (round.error === undefined) {
      round.error = o.reason;
    }
  }
  return round;
}
