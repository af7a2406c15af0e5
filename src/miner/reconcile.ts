// What the coordinator says this miner holds, against what its journal and outbox say
// (docs/architecture.md#durability-rules). A job it no longer lists as RUNNING for us is settled
// there (accepted, failed, cancelled, requeued): its records are dropped, never run, submitted or
// reported again, since upstream accepts a result twice and bills both. A job it lists that
// nothing here knows is an orphan (handed over in the instant before a crash, or by a poll whose
// answer was lost): failed back, so it does not stay RUNNING there for ever.
import { backoffFor, sleep } from "../backoff.js";
import { CoordinatorError } from "../coordinator/errors.js";
import type { CoordinatorClient } from "../coordinator/types.js";
import { describeError } from "../describe-error.js";

/** What the miner's own state says about a job ("cancelled": a marker that nothing is owed). */
export type LocalRecordKind = "result" | "claim" | "failure" | "damaged record" | "cancelled";

export interface Reconciled {
  /** Jobs with a local record that the coordinator no longer runs for us, and what the record is. */
  settled: Map<string, LocalRecordKind[]>;
  /** Jobs it runs for us that no local record and nothing in hand knows. */
  orphans: string[];
}

/**
 * `records`: every job the journal and outbox name. `inHand`: jobs running or with a verdict on
 * its way (not necessarily recorded: the state may have been unwritable), which are neither.
 */
export function reconcile(
  running: ReadonlySet<string>,
  records: Iterable<[string, LocalRecordKind]>,
  inHand: ReadonlySet<string>,
): Reconciled {
  const settled = new Map<string, LocalRecordKind[]>();
  const known = new Set(inHand);
  for (const [jobId, kind] of records) {
    // A cancelled job listed as ours again has nothing here to run it from: an orphan.
    if (kind !== "cancelled") known.add(jobId);
    if (running.has(jobId) || inHand.has(jobId)) continue;
    const kinds = settled.get(jobId) ?? [];
    if (!kinds.includes(kind)) kinds.push(kind);
    settled.set(jobId, kinds);
  }
  const orphans = [...running].filter((id) => !known.has(id));
  return { settled, orphans };
}

/** Tries of the listing before the miner goes on without it. */
const LIST_TRIES = 4;

export type RunningAnswer = { running: Set<string> } | { running: null; why: string };

/**
 * The jobs the coordinator runs for us, asked a few times when the answer fails on the way; null
 * (with why) when the dialect or the coordinator has no listing, or it keeps failing.
 */
export async function askRunning(client: CoordinatorClient, signal: AbortSignal): Promise<RunningAnswer> {
  if (!client.runningJobs) return { running: null, why: `the ${client.protocol} dialect has no listing` };
  const backoff = backoffFor("reconcile");
  for (let attempt = 1; ; attempt++) {
    try {
      const ids = await client.runningJobs(signal);
      return ids === null
        ? { running: null, why: "the coordinator does not offer the listing" }
        : { running: new Set(ids) };
    } catch (err) {
      const retryable = err instanceof CoordinatorError && err.retryable;
      if (!retryable || attempt >= LIST_TRIES || signal.aborted) {
        return { running: null, why: `the listing failed: ${String(describeError(err)["message"])}` };
      }
      await sleep(backoff.next(err.retryAfterMs), signal);
    }
  }
}
