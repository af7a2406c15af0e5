// After a start: resubmit what the outbox holds, re-send failure verdicts not yet acknowledged,
// rerun claimed jobs whose deadline allows (fail the rest as miner_restarted), and fail back the
// jobs of records that cannot be read, when they still name them.
import type { Job } from "../coordinator/types.js";
import type { Logger } from "../log.js";
import type { ClaimedJob } from "./journal.js";
import type { Reporter } from "./reporter.js";
import type { MinerDeps } from "./types.js";

export interface RecoverContext {
  d: Pick<MinerDeps, "outbox" | "journal">;
  log: Logger;
  reporter: Reporter;
  isStopping(): boolean;
  startJob(job: Job, claimed: ClaimedJob): void;
}

/** Resubmit the outbox; rerun (or fail) what the journal says we had claimed. */
export async function recover(ctx: RecoverContext): Promise<void> {
  const { results, corrupt } = await ctx.d.outbox.pending();
  const journal = await ctx.d.journal.entries();
  for (const c of [...corrupt, ...journal.corrupt]) {
    const which = corrupt.includes(c) ? "outbox" : "journal";
    ctx.log.error(
      { event: `${which}_corrupt`, path: c.path, jobId: c.key, reason: c.reason },
      c.key
        ? `unreadable ${which} entry kept at ${c.path}; its job is failed back as miner_restarted`
        : `unreadable ${which} entry kept at ${c.path}; it names no job, so nothing can be reported`,
    );
    if (c.key)
      await ctx.reporter.fail(
        c.key,
        "miner_restarted",
        `the miner restarted and its ${which} record of this job was unreadable`,
      );
  }
  if (results.length > 0)
    ctx.log.info(
      { event: "outbox_recovered", count: results.length },
      "resubmitting results from the outbox",
    );
  const inOutbox = new Set(results.map((r) => r.jobId));
  for (const r of results) ctx.reporter.submit(r);

  for (const claimed of journal.jobs) {
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
}
