// One job's run, from the claim to the result handed to the reporter: journal the claim, screen
// the payload and constraints, VRAM admission, generate under the watchdog, sign the receipt,
// write the result to the outbox, then deliver. Every way it can end is one verdict.
import { BackendError, type InferenceResult } from "../backends/types.js";
import { monotonicFromWall, monotonicNow } from "../clock.js";
import type { CompletedJob, Job } from "../coordinator/types.js";
import { describeError } from "../describe-error.js";
import type { Logger } from "../log.js";
import type { MinerEvent } from "../ops/events.js";
import { ExitCode } from "./exit-codes.js";
import type { FailureCode } from "./failure-codes.js";
import { CANCELLED, type CancelWatch, type JobCancels } from "./job-cancel.js";
import type { ClaimedJob } from "./journal.js";
import type { Reporter } from "./reporter.js";
import { checkConstraints, validatePayload } from "./screening.js";
import { isStorageError, type StateStorage } from "./state-storage.js";
import { type MinerDeps, MinerFatalError, type MinerSettings } from "./types.js";
import { type AbortWhy, generateWithDeadline, WedgedError } from "./watchdog.js";

export interface JobContext {
  d: MinerDeps;
  s: MinerSettings;
  log: Logger;
  reporter: Reporter;
  storage: StateStorage;
  /** The loop's running totals, updated in place. */
  stats: { completed: number; tokens: number; promptTokens: number; busySeconds: number };
  emit(e: MinerEvent): void;
  /** Jobs the coordinator no longer runs for us (job-cancel.ts): never submitted or reported. */
  cancels?: (JobCancels & Pick<CancelWatch, "track" | "untrack">) | undefined;
}

/**
 * The claim's write, settled: a disk that cannot take the claim does not stop the job (it runs and
 * is delivered from memory). Never rejects.
 */
async function settleClaim(ctx: JobContext, jobId: string, write: Promise<void>): Promise<void> {
  try {
    await write;
  } catch (err) {
    if (!ctx.storage.noteFailure(err))
      ctx.log.error(
        { event: "journal_failed", jobId, err: describeError(err) },
        "could not journal a claimed job; it runs anyway",
      );
    else
      ctx.log.warn(
        { event: "job_not_durable", jobId, err: describeError(err) },
        "the job could not be journaled; it runs anyway, but a crash now would lose it",
      );
  }
}

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
    await run(ctx, job, recovered, abort, deadlineAt);
  } finally {
    ctx.cancels?.untrack(job.jobId);
  }
}

async function run(
  ctx: JobContext,
  job: Job,
  recovered: ClaimedJob | null,
  abort: AbortController,
  deadlineAt: number,
): Promise<void> {
  const jobId = job.jobId;
  const claimedAt = recovered?.claimedAt ?? Date.now();
  const wallDeadlineAt = recovered?.deadlineAt ?? claimedAt + ctx.s.jobTimeoutMs;
  // The claim goes to the journal while the job is screened and run: waiting for its fsyncs first
  // would not make the hand-out any safer (a crash before they end loses the job either way), only
  // slower. Every later write for this job waits for it, so the journal's order stays
  // claim → verdict and the claim leaves only after the result is in the outbox.
  let journaled: Promise<void> = Promise.resolve();
  if (!recovered) {
    try {
      journaled = settleClaim(
        ctx,
        jobId,
        ctx.d.journal.record({
          jobId,
          payload: job.payload,
          constraints: job.constraints,
          claimedAt,
          deadlineAt: wallDeadlineAt,
        }),
      );
    } catch (err) {
      // e.g. nesting too deep to serialize: no valid job looks like that.
      return ctx.reporter.fail(
        jobId,
        "invalid_payload",
        `the payload cannot be stored: ${(err as Error).message}`,
      );
    }
  }
  const fail = async (code: FailureCode, message: string): Promise<void> => {
    await journaled;
    return ctx.reporter.fail(jobId, code, message);
  };
  const log = ctx.log.child({ jobId });

  const v = validatePayload(job.payload, ctx.s.limits);
  if (!v.ok) {
    log.warn(
      { event: "job_rejected", errorCode: v.rejection.errorCode, reason: v.rejection.message },
      "invalid job",
    );
    return fail(v.rejection.errorCode, v.rejection.message);
  }
  const req = v.request;
  const unmet = checkConstraints(job.constraints, await ctx.d.hostFacts());
  if (unmet) {
    log.warn(
      { event: "job_rejected", errorCode: unmet.errorCode, reason: unmet.message },
      "job constraints not met",
    );
    return fail(unmet.errorCode, unmet.message);
  }
  if (!ctx.d.backend.hasModel(req.model)) {
    const served = ctx.d.backend.listModels().map((m) => m.name);
    const msg = `model ${JSON.stringify(req.model)} is not served by this miner (it serves: ${served.join(", ") || "none"})`;
    log.warn({ event: "job_rejected", errorCode: "model_not_found", reason: msg }, "unknown model");
    return fail("model_not_found", msg);
  }
  const refusal = ctx.d.admit ? await ctx.d.admit(req) : null;
  if (refusal) {
    log.warn(
      { event: "job_rejected", errorCode: refusal.errorCode, reason: refusal.message },
      "job refused by VRAM admission",
    );
    return fail(refusal.errorCode, refusal.message);
  }

  log.info(
    { event: "job_started", model: req.model, maxTokens: req.maxTokens, promptChars: req.prompt.length },
    "job started",
  );
  const afterJob = ctx.d.jobMemoryProbe ? await ctx.d.jobMemoryProbe().catch(() => null) : null;
  const startedAt = Date.now(); // for the receipt; durations and the deadline are monotonic
  const t0 = performance.now();
  let result: InferenceResult;
  try {
    result = await generateWithDeadline(ctx.d.backend, req, abort, deadlineAt, ctx.s.abortGraceMs);
  } catch (err) {
    if (abort.signal.reason === CANCELLED && !(err instanceof WedgedError)) {
      // Cancelled (logged once by the watch): no verdict is owed, only the journal's record.
      await journaled;
      return ctx.cancels?.settle(jobId, false);
    }
    const why = abort.signal.reason as AbortWhy | undefined;
    if (err instanceof WedgedError) {
      await fail("timeout", err.message);
      throw new MinerFatalError(err.message, ExitCode.wedged);
    }
    const code =
      why === "deadline"
        ? "timeout"
        : why === "shutting_down" || why === "gpu_unavailable"
          ? why
          : err instanceof BackendError
            ? err.code
            : "inference_failed";
    const msg =
      why === "deadline"
        ? `job exceeded its deadline of ${Math.round((wallDeadlineAt - claimedAt) / 1000)} s`
        : why === "shutting_down"
          ? "the miner is shutting down"
          : why === "gpu_unavailable"
            ? "this worker's GPU was drained (lost or sick): the job cannot finish here"
            : (err as Error).message;
    log.warn({ event: "job_failed", errorCode: code, reason: msg }, "job failed");
    return fail(code, msg);
  } finally {
    if (ctx.s.unloadAfterJob) await ctx.d.backend.unloadAll().catch(() => undefined);
    if (afterJob) await afterJob().catch(() => undefined);
  }

  // Cancelled as the generation ended: nothing to sign, store or send.
  if (ctx.cancels?.isCancelled(jobId)) {
    await journaled;
    return ctx.cancels.settle(jobId, false);
  }
  const completedAt = Math.max(startedAt, Date.now());
  const durationMs = Math.round(performance.now() - t0);
  const gpu = ctx.d.jobMetrics ? await ctx.d.jobMetrics().catch(() => null) : null;
  const receipt = ctx.d.signReceipt({
    jobId,
    minerId: ctx.s.minerId,
    model: result.model,
    prompt: req.prompt,
    output: result.output,
    units: result.completionTokens,
    startedAt: Math.floor(startedAt / 1000),
    completedAt: Math.floor(completedAt / 1000),
    durationMs,
  });
  const completed: CompletedJob = {
    jobId,
    output: result.output,
    model: result.model,
    promptTokens: result.promptTokens,
    completionTokens: result.completionTokens,
    executionTimeS: durationMs / 1000,
    startedAt,
    completedAt,
    metrics: {
      duration_ms: durationMs,
      gpu_utilization: gpu?.gpu_utilization ?? null,
      memory_used: gpu?.memory_used ?? null,
      memory_peak: null,
      units: result.completionTokens,
      unit_type: "tokens",
    },
    receipt,
  };
  // Durable before the first submit; only then does the claim leave the journal (the two writes
  // run side by side: any crash in between leaves a state recovery handles). A disk that cannot
  // take the result does not lose it: it is submitted from memory.
  const [stored] = await Promise.all([
    ctx.d.outbox.put(completed).then(
      () => null,
      (err: unknown) => err,
    ),
    journaled,
  ]);
  if (stored !== null) {
    if (!isStorageError(stored)) throw stored;
    ctx.storage.noteFailure(stored);
    log.warn(
      { event: "result_not_durable", err: describeError(stored) },
      "the result could not be written to the outbox; submitting it from memory",
    );
  } else {
    // Even when the claim's write reported a failure: its file may still have landed (a failed
    // directory fsync after the rename), and a claim left beside a delivered result would be
    // rerun on the next start. Waiting for `journaled` above keeps this after the claim's write.
    await ctx.d.journal.remove(jobId).catch((err: unknown) => {
      if (!isStorageError(err)) throw err;
      ctx.storage.noteFailure(err);
    });
  }
  // Cancelled while the result was written: it leaves the outbox unsent (settle removes it).
  if (ctx.cancels?.isCancelled(jobId)) return ctx.cancels.settle(jobId, true);
  ctx.emit({ type: "job_completed", durationMs, completionTokens: result.completionTokens });
  ctx.stats.completed++;
  ctx.stats.tokens += result.completionTokens;
  ctx.stats.promptTokens += result.promptTokens;
  ctx.stats.busySeconds += durationMs / 1000;
  log.info(
    {
      event: "job_completed",
      model: result.model,
      tokens: result.completionTokens,
      promptTokens: result.promptTokens,
      durationMs,
      backend: result.backend,
    },
    "job completed",
  );
  // The receipts log is a record for the operator, not the result's safe copy (the outbox is):
  // the submit does not wait for it.
  const logged = ctx.d
    .recordReceipt({ kind: "miner", jobId, receipt, verified: true })
    .catch((err: unknown) => {
      // A receipts log that cannot be written pauses mining as a full disk does.
      ctx.storage.noteFailure(err);
      log.error(
        { event: "receipt_log_failed", err: describeError(err) },
        "could not append to the receipts log",
      );
    });
  ctx.reporter.submit(completed);
  await logged;
}
