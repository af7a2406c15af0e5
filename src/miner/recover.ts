// After a start: settle with the coordinator first (reconcile.ts: what it no longer runs for us is
// dropped, what it runs for us unknown to us is failed back as orphaned), then resubmit what the
// outbox holds, re-send failure verdicts not yet acknowledged, rerun claimed jobs whose deadline
// allows (fail the rest as miner_restarted), and fail back the jobs of records that cannot be
// read, when they still name them. Settles again whenever a storage fault heals.
import type { Job } from "../coordinator/types.js";
import type { Logger } from "../log.js";
import type { ClaimedJob } from "./journal.js";
import { askRunning, type LocalRecordKind, reconcile } from "./reconcile.js";
import type { Reporter } from "./reporter.js";
import type { MinerDeps } from "./types.js";

export interface RecoverContext {
  /** With `storage` (and `inHand`), the miner settles again each time a storage fault heals. */
  d: Pick<MinerDeps, "outbox" | "journal" | "client" | "storage">;
  log: Logger;
  reporter: Reporter;
  isStopping(): boolean;
  startJob(job: Job, claimed: ClaimedJob): void;
  /** Ends the coordinator's listing at a stop. */
  signal?: AbortSignal | undefined;
  /**
   * Jobs running now: a settlement after a storage fault heals (before a new job is taken) knows
   * them in hand, journaled or not. Without it, the miner settles at start only.
   */
  inHand?: (() => Iterable<string>) | undefined;
}

const never = new AbortController().signal;

/**
 * Ask the coordinator what it runs for us and act on the difference with `records`; returns the
 * jobs found settled (none when it cannot say: the local state alone decides then).
 */
async function settleWithCoordinator(
  ctx: RecoverContext,
  records: () => Promise<[string, LocalRecordKind][]>,
  atStart: boolean,
): Promise<Set<string>> {
  const inHand = new Set(ctx.inHand?.() ?? []);
  for (const id of ctx.reporter.pendingIds()) inHand.add(id);
  const answer = await askRunning(ctx.d.client, ctx.signal ?? never);
  const local = await records();
  if (answer.running === null) {
    if (atStart && local.length > 0)
      ctx.log.info(
        { event: "running_jobs_unlisted", reason: answer.why },
        "the coordinator cannot say which jobs it runs for this miner: recovering from local state alone (a result it accepted whose removal was lost is submitted again)",
      );
    return new Set();
  }
  // In hand before the listing or since: a job that ended meanwhile was listed while running.
  for (const id of ctx.inHand?.() ?? []) inHand.add(id);
  for (const id of ctx.reporter.pendingIds()) inHand.add(id);
  const plan = reconcile(answer.running, local, inHand);
  for (const [jobId, kinds] of plan.settled) {
    ctx.log.info(
      { event: "job_already_settled", jobId, records: kinds },
      "the coordinator no longer runs this job for this miner: it is not run, submitted or reported again",
    );
    if (kinds.includes("result")) await ctx.d.outbox.remove(jobId);
    if (kinds.includes("claim") || kinds.includes("failure") || kinds.includes("cancelled"))
      await ctx.d.journal.remove(jobId);
  }
  for (const jobId of plan.orphans) {
    if (ctx.isStopping()) break;
    ctx.log.warn(
      { event: "job_orphaned", jobId },
      "the coordinator runs a job for this miner that it has no record of: failing it back",
    );
    await ctx.reporter.fail(
      jobId,
      "orphaned",
      "the coordinator lists this job as running on this miner, which has no record of it (handed over just before a restart, or by a poll whose answer was lost)",
    );
  }
  return new Set(plan.settled.keys());
}

/** Every job the outbox and journal records name, with what the record is. */
function recordsOf(results: { jobId: string }[], claims: ClaimedJob[]): [string, LocalRecordKind][] {
  return [
    ...results.map((r): [string, LocalRecordKind] => [r.jobId, "result"]),
    ...claims.map((c): [string, LocalRecordKind] => [
      c.jobId,
      c.cancelledAt !== undefined ? "cancelled" : c.failure ? "failure" : "claim",
    ]),
  ];
}

async function currentRecords(ctx: RecoverContext): Promise<[string, LocalRecordKind][]> {
  return recordsOf((await ctx.d.outbox.pending()).results, (await ctx.d.journal.entries()).jobs);
}

/**
 * Resubmit the outbox; rerun (or fail) what the journal says we had claimed. Resolves with a way
 * to settle with the coordinator again (what a healed storage fault does; e.g. after a poll that
 * failed server-side may have handed a job over): call it only while no poll is in flight.
 */
export async function recover(ctx: RecoverContext): Promise<() => Promise<void>> {
  const { results, corrupt } = await ctx.d.outbox.pending();
  const journal = await ctx.d.journal.entries();
  const records = recordsOf(results, journal.jobs);
  for (const c of [...corrupt, ...journal.corrupt]) if (c.key) records.push([c.key, "damaged record"]);
  const settled = await settleWithCoordinator(ctx, async () => records, true);
  const again = async (): Promise<void> => {
    // Without knowing the jobs in hand, a job running unjournaled would look orphaned.
    if (ctx.inHand && !ctx.isStopping()) await settleWithCoordinator(ctx, () => currentRecords(ctx), false);
  };
  // A write lost while the state could not be written leaves records of settled work behind.
  ctx.d.storage?.onHealed(again);

  for (const c of [...corrupt, ...journal.corrupt]) {
    const which = corrupt.includes(c) ? "outbox" : "journal";
    const report = c.key !== null && !settled.has(c.key);
    ctx.log.error(
      { event: `${which}_corrupt`, path: c.path, jobId: c.key, reason: c.reason },
      report
        ? `unreadable ${which} entry kept at ${c.path}; its job is failed back as miner_restarted`
        : `unreadable ${which} entry kept at ${c.path}; ${c.key ? "the coordinator has settled its job" : "it names no job"}, so nothing is reported`,
    );
    if (report && c.key)
      await ctx.reporter.fail(
        c.key,
        "miner_restarted",
        `the miner restarted and its ${which} record of this job was unreadable`,
      );
  }
  // Cancelled before the restart: its result (if any) is never sent; the marker has done its job.
  const cancelled = new Set(journal.jobs.filter((c) => c.cancelledAt !== undefined).map((c) => c.jobId));
  for (const jobId of cancelled) {
    if (settled.has(jobId)) continue;
    ctx.log.info(
      { event: "cancelled_job_dropped", jobId },
      "the coordinator cancelled this job before the restart: it is not run, submitted or reported",
    );
    if (results.some((r) => r.jobId === jobId)) await ctx.d.outbox.remove(jobId);
    await ctx.d.journal.remove(jobId);
  }
  const owed = results.filter((r) => !settled.has(r.jobId) && !cancelled.has(r.jobId));
  if (owed.length > 0)
    ctx.log.info({ event: "outbox_recovered", count: owed.length }, "resubmitting results from the outbox");
  const inOutbox = new Set(owed.map((r) => r.jobId));
  for (const r of owed) ctx.reporter.submit(r);

  for (const claimed of journal.jobs) {
    if (settled.has(claimed.jobId) || cancelled.has(claimed.jobId)) continue;
    if (inOutbox.has(claimed.jobId)) {
      await ctx.d.journal.remove(claimed.jobId);
      continue;
    }
    if (claimed.failure) {
      // Already failed before the restart; only the report is left to make.
      ctx.reporter.resendFailure(claimed.jobId, claimed.failure.errorCode, claimed.failure.message);
      continue;
    }
    if (ctx.isStopping()) break;
    // Written before the restart, so wall time: the one comparison a monotonic clock cannot make.
    const left = claimed.deadlineAt - Date.now();
    if (left > 1000) {
      ctx.log.info(
        { event: "job_resumed", jobId: claimed.jobId, msLeft: left },
        "running a job claimed before the restart",
      );
      ctx.startJob(
        { jobId: claimed.jobId, payload: claimed.payload, constraints: claimed.constraints },
        claimed,
      );
    } else {
      ctx.log.warn(
        { event: "job_expired_on_restart", jobId: claimed.jobId },
        "claimed job past its deadline after restart",
      );
      await ctx.reporter.fail(
        claimed.jobId,
        "miner_restarted",
        "the miner restarted and the job's deadline has passed",
      );
    }
  }
  return again;
}
