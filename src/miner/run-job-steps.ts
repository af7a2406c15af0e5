// The steps of one job's run (run-job.ts puts them in order): journal the claim, screen the job,
// generate, sign the result, make it durable, count it, deliver it. Each step does one thing and
// says how it ended; none decides what happens next.
import type { InferenceRequest, InferenceResult } from "../backends/types.js";
import type { CompletedJob, Job } from "../coordinator/types.js";
import { describeError } from "../describe-error.js";
import type { Logger } from "../log.js";
import type { MinerEvent } from "../ops/events.js";
import type { FailureCode } from "./failure-codes.js";
import type { CancelWatch, JobCancels } from "./job-cancel.js";
import type { ClaimedJob } from "./journal.js";
import type { Reporter } from "./reporter.js";
import { checkConstraints, validatePayload } from "./screening.js";
import { isStorageError, type StateStorage } from "./state-storage.js";
import type { MinerDeps, MinerSettings } from "./types.js";
import { generateWithDeadline } from "./watchdog.js";

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
 * Journal a new claim; a recovered job is journaled already. Resolves once the write has settled
 * and never rejects: a disk that cannot take the claim does not stop the job (it runs and is
 * delivered from memory). Throws at once when the claim cannot be stored at all.
 */
export function journalClaim(
  ctx: JobContext,
  job: Job,
  recovered: ClaimedJob | null,
  claim: { claimedAt: number; deadlineAt: number },
): Promise<void> {
  if (recovered) return Promise.resolve();
  const write = ctx.d.journal.record({
    jobId: job.jobId,
    payload: job.payload,
    constraints: job.constraints,
    ...claim,
  });
  return write.catch((err: unknown) => {
    if (!ctx.storage.noteFailure(err))
      ctx.log.error(
        { event: "journal_failed", jobId: job.jobId, err: describeError(err) },
        "could not journal a claimed job; it runs anyway",
      );
    else
      ctx.log.warn(
        { event: "job_not_durable", jobId: job.jobId, err: describeError(err) },
        "the job could not be journaled; it runs anyway, but a crash now would lose it",
      );
  });
}

export type Screened =
  | { ok: true; req: InferenceRequest }
  /** `said`: the log line's words for this kind of refusal. */
  | { ok: false; errorCode: FailureCode; message: string; said: string };

/** Whether this miner can run the job: payload, constraints, model, VRAM admission, in that order. */
export async function screenJob(ctx: JobContext, job: Job): Promise<Screened> {
  const v = validatePayload(job.payload, ctx.s.limits);
  if (!v.ok) return { ok: false, ...v.rejection, said: "invalid job" };
  const req = v.request;
  const unmet = checkConstraints(job.constraints, await ctx.d.hostFacts());
  if (unmet) return { ok: false, ...unmet, said: "job constraints not met" };
  if (!ctx.d.backend.hasModel(req.model)) {
    const served = ctx.d.backend.listModels().map((m) => m.name);
    const message = `model ${JSON.stringify(req.model)} is not served by this miner (it serves: ${served.join(", ") || "none"})`;
    return { ok: false, errorCode: "model_not_found", message, said: "unknown model" };
  }
  const refusal = ctx.d.admit ? await ctx.d.admit(req) : null;
  if (refusal) return { ok: false, ...refusal, said: "job refused by VRAM admission" };
  return { ok: true, req };
}

export interface Generated {
  result: InferenceResult;
  /** Wall time the generation began (for the receipt). */
  startedAt: number;
  /** From the generation's start to the end of its release, in ms (monotonic). */
  durationMs: number;
}

/**
 * What must follow a generation however it ended (unload the models when asked to, check that
 * VRAM came back): started before it, run by the caller after it, so a failure verdict is never
 * held up behind it. Never rejects.
 */
export async function afterGeneration(ctx: JobContext): Promise<() => Promise<void>> {
  const afterJob = ctx.d.jobMemoryProbe ? await ctx.d.jobMemoryProbe().catch(() => null) : null;
  return async () => {
    if (ctx.s.unloadAfterJob) await ctx.d.backend.unloadAll().catch(() => undefined);
    if (afterJob) await afterJob().catch(() => undefined);
  };
}

/** Generate under the job's deadline and the watchdog (watchdog.ts). */
export function generate(
  ctx: JobContext,
  req: InferenceRequest,
  abort: AbortController,
  deadlineAt: number,
): Promise<InferenceResult> {
  return generateWithDeadline(ctx.d.backend, req, abort, deadlineAt, ctx.s.abortGraceMs);
}

/** The result as the coordinator gets it, with the miner's signed receipt. */
export async function signedResult(
  ctx: JobContext,
  jobId: string,
  req: InferenceRequest,
  g: Generated,
): Promise<CompletedJob> {
  const { result, startedAt, durationMs } = g;
  const completedAt = Math.max(startedAt, Date.now());
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
  return {
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
}

/**
 * Durable before the first submit; only then does the claim leave the journal (the two writes run
 * side by side: any crash in between leaves a state recovery handles). A disk that cannot take the
 * result does not lose it: it is submitted from memory. `journaled`: the claim's write, settled.
 */
export async function storeResult(
  ctx: JobContext,
  completed: CompletedJob,
  journaled: Promise<void>,
  log: Logger,
): Promise<void> {
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
    return;
  }
  // Even when the claim's write reported a failure: its line may still be in the log (a failed
  // write is cut off only before the next append, and a crash can come first), and a claim left
  // beside a delivered result would be rerun on the next start. Waiting for `journaled` above
  // keeps this removal after the claim's line.
  await ctx.d.journal.remove(completed.jobId).catch((err: unknown) => {
    if (!isStorageError(err)) throw err;
    ctx.storage.noteFailure(err);
  });
}

/** The job is done: the loop's totals, the ops event, the log line. */
export function countCompleted(ctx: JobContext, g: Generated, log: Logger): void {
  const { result, durationMs } = g;
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
}

/**
 * Hand the result to the reporter. The receipts log is a record for the operator, not the
 * result's safe copy (the outbox is): the submit does not wait for it.
 */
export async function deliver(ctx: JobContext, completed: CompletedJob, log: Logger): Promise<void> {
  const logged = ctx.d
    .recordReceipt({ kind: "miner", jobId: completed.jobId, receipt: completed.receipt, verified: true })
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
