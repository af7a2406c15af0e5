// One round of polls. Usually one poll; in a backlog (the last round brought a job) one per free
// slot, as many as the budget granted at once: across a network each poll is a round trip, and polling one at a
// time would leave slots idle while jobs wait. Backlog polls ask for no wait, so an emptied queue
// answers them at once. A dialect whose polls would race each other for the same listed job
// (traits.parallelPolls false: claim) always polls one at a time. (docs/operations.md#polling-coordinator-load-vs-pickup)
import { CoordinatorError, UnusableJobError } from "../coordinator/errors.js";
import type { CoordinatorClient, DialectTraits, Job } from "../coordinator/types.js";
import type { PollResult } from "../ops/events.js";

export interface PollRoundOptions {
  /** The long-poll wait an idle round's poll asks for (a backlog round asks for none). */
  longPollSeconds: number;
  /** Polls granted for this round (at least 1; more only in a backlog, see pollsWanted). */
  polls: number;
  backlog: boolean;
  signal: AbortSignal;
}

/** How many polls to ask the budget for: one per free slot in a backlog (a dialect with parallel polls), else one. */
export function pollsWanted(
  traits: Pick<DialectTraits, "parallelPolls">,
  backlog: boolean,
  freeSlots: number,
): number {
  return backlog && traits.parallelPolls ? Math.max(1, freeSlots) : 1;
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

/** Send the polls the budget granted, all at once, and sort what they brought. */
export async function pollRound(client: CoordinatorClient, o: PollRoundOptions): Promise<PollRound> {
  const polls: Promise<Job | null>[] = [];
  // In a backlog every poll asks for no wait: the round settles as a whole, and one poll held
  // open on an emptied queue would keep the jobs the others brought from starting.
  const n = client.traits.parallelPolls ? Math.max(1, o.polls) : 1;
  for (let i = 0; i < n; i++) polls.push(client.poll(o.backlog ? 0 : o.longPollSeconds, o.signal));
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
