// One job's run, from the claim to the result handed to the reporter, as a sequence of steps
// (run-job-steps.ts): journal the claim, screen the payload and constraints (VRAM admission
// included), generate under the watchdog, sign the receipt, write the result to the outbox, count
// it, deliver it. Every way it can end is one verdict; how a failed generation maps to one is
// job-failure.ts.
import type { InferenceRequest, InferenceResult } from "../backends/types.js";
import { monotonicFromWall, monotonicNow } from "../clock.js";
import type { Job } from "../coordinator/types.js";
import type { Logger } from "../log.js";
import { ExitCode } from "./exit-codes.js";
import type { FailureCode } from "./failure-codes.js";
import { generationEnd, unstorablePayload } from "./job-failure.js";
import type { ClaimedJob } from "./journal.js";
import {
  afterGeneration,
  countCompleted,
  deliver,
  type Generated,
  generate,
  type JobContext,
  journalClaim,
  screenJob,
  signedResult,
  storeResult,
} from "./run-job-steps.js";
import { MinerFatalError } from "./types.js";

export type { JobContext } from "./run-job-steps.js";

/**
 * When a job must end, on the monotonic clock: its timeout from now, or a resumed job's deadline,
 * written down as wall time before the restart (the one wall time read as a schedule, once).
 */
export function jobDeadline(recovered: ClaimedJob | null, jobTimeoutMs: number): number {
  return recovered ? monotonicFromWall(recovered.deadlineAt) : monotonicNow() + jobTimeoutMs;
}

/**
 * `deadlineAt` is on the monotonic clock; the journal keeps wall times, which survive a restart.
 * While it runs, the coordinator is asked now and then whether the job is still ours (job-cancel.ts).
 */
export async function runJob(
  ctx: JobContext,
  job: Job,
  recovered: ClaimedJob | null,
  abort: AbortController,
  deadlineAt: number,
): Promise<void> {
  ctx.cancels?.track(job.jobId, abort);
  try {
    await run(ctx, { job, recovered, abort, deadlineAt });
  } finally {
    ctx.cancels?.untrack(job.jobId);
  }
}

/** One run's hand-out, as runJob was given it. */
interface JobRun {
  job: Job;
  recovered: ClaimedJob | null;
  abort: AbortController;
  deadlineAt: number;
}

async function run(ctx: JobContext, { job, recovered, abort, deadlineAt }: JobRun): Promise<void> {
  const jobId = job.jobId;
  const claimedAt = recovered?.claimedAt ?? Date.now();
  const wallDeadlineAt = recovered?.deadlineAt ?? claimedAt + ctx.s.jobTimeoutMs;
  // The claim goes to the journal while the job is screened and run: waiting for its fsyncs first
  // would not make the hand-out any safer (a crash before they end loses the job either way), only
  // slower. Every later write for this job waits for it, so the journal's order stays
  // claim → verdict and the claim leaves only after the result is in the outbox.
  let journaled: Promise<void>;
  try {
    journaled = journalClaim(ctx, job, recovered, { claimedAt, deadlineAt: wallDeadlineAt });
  } catch (err) {
    const f = unstorablePayload(err);
    return ctx.reporter.fail(jobId, f.code, f.message);
  }
  const ends = jobEnds(ctx, jobId, journaled);
  const log = ctx.log.child({ jobId });

  const screened = await screenJob(ctx, job);
  if (!screened.ok) {
    log.warn(
      { event: "job_rejected", errorCode: screened.errorCode, reason: screened.message },
      screened.said,
    );
    return ends.fail(screened.errorCode, screened.message);
  }
  const req = screened.req;
  log.info(
    { event: "job_started", model: req.model, maxTokens: req.maxTokens, promptChars: req.prompt.length },
    "job started",
  );
  const budgetS = Math.round((wallDeadlineAt - claimedAt) / 1000);
  const generated = await generateOrEnd(ctx, req, abort, deadlineAt, { ends, budgetS, log });
  if (!generated) return;

  // Cancelled as the generation ended: nothing to sign, store or send.
  if (ctx.cancels?.isCancelled(jobId)) return ends.cancelled(false);
  const completed = await signedResult(ctx, jobId, req, generated);
  await storeResult(ctx, completed, journaled, log);
  // Cancelled while the result was written: it leaves the outbox unsent (settle removes it).
  if (ctx.cancels?.isCancelled(jobId)) return ends.cancelled(true);
  countCompleted(ctx, generated, log);
  await deliver(ctx, completed, log);
}

/** How a job ends without a result; both wait for the claim's write, so the journal reads claim → end. */
interface JobEnds {
  /** A failure verdict, journaled and sent until acknowledged. */
  fail(code: FailureCode, message: string): Promise<void>;
  /** Cancelled: no verdict is owed, only the journal's record (and the outbox's, once stored). */
  cancelled(resultStored: boolean): Promise<void>;
}

function jobEnds(ctx: JobContext, jobId: string, journaled: Promise<void>): JobEnds {
  return {
    async fail(code, message) {
      await journaled;
      return ctx.reporter.fail(jobId, code, message);
    },
    async cancelled(resultStored) {
      await journaled;
      return ctx.cancels?.settle(jobId, resultStored);
    },
  };
}

/**
 * Generate, then release what the job held. A generation that threw ends the job here with the
 * verdict job-failure.ts maps it to: resolves null then. A wedged backend also stops the miner.
 */
async function generateOrEnd(
  ctx: JobContext,
  req: InferenceRequest,
  abort: AbortController,
  deadlineAt: number,
  o: { ends: JobEnds; budgetS: number; log: Logger },
): Promise<Generated | null> {
  const release = await afterGeneration(ctx);
  const startedAt = Date.now(); // for the receipt; durations and the deadline are monotonic
  const t0 = performance.now();
  let result: InferenceResult;
  try {
    result = await generate(ctx, req, abort, deadlineAt);
  } catch (err) {
    try {
      const end = generationEnd(err, abort.signal.reason, o.budgetS);
      // Cancelled (logged once by the watch).
      if (end.kind === "cancelled") await o.ends.cancelled(false);
      else if (end.wedged) {
        await o.ends.fail(end.code, end.message);
        throw new MinerFatalError(end.message, ExitCode.wedged);
      } else {
        o.log.warn({ event: "job_failed", errorCode: end.code, reason: end.message }, "job failed");
        await o.ends.fail(end.code, end.message);
      }
      return null;
    } finally {
      await release();
    }
  }
  await release();
  // The duration runs to the end of the release (unload, VRAM check): the job held the GPU until then.
  return { result, startedAt, durationMs: Math.round(performance.now() - t0) };
}
