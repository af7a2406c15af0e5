// Delivers what the miner owes the coordinator — computed results (from the outbox) and failure
// verdicts (from the journal) — retrying each until it is acknowledged or the coordinator says the
// job is gone. On shutdown, flush() gives every pending delivery one more try now and a bounded
// window; what is left stays on disk for the next start.
import { backoffFor, sleep, within } from "../backoff.js";
import { monotonicNow } from "../clock.js";
import type { CompletedJob, CoordinatorClient, SubmitAck } from "../coordinator/types.js";
import { describeError } from "../describe-error.js";
import { earnedBy } from "../earnings/earned.js";
import type { Logger } from "../log.js";
import type { MinerEvent } from "../ops/events.js";
import type { CoordinatorReceiptCheck } from "../receipts/verify.js";
import type { FailureCode } from "./failure-codes.js";
import type { ClaimJournal } from "./journal.js";
import type { Outbox } from "./outbox.js";
import { decide, type RetryRule } from "./retry.js";

/** The receipts module's verdict on a coordinator receipt (one definition, there). */
export type { CoordinatorReceiptCheck };

export interface ReceiptRecord {
  /** failure: a job failed back (reason: its error code), recorded for the earnings report. */
  kind: "miner" | "coordinator" | "failure";
  jobId: string;
  receipt: unknown;
  verified: boolean | null;
  reason?: string | undefined;
}

export interface ReporterDeps {
  client: CoordinatorClient;
  outbox: Outbox;
  journal: ClaimJournal;
  log: Logger;
  checkCoordinatorReceipt(rawText: string): CoordinatorReceiptCheck;
  recordReceipt(entry: ReceiptRecord): Promise<void>;
  /** Told about failed writes, so a full disk pauses mining instead of failing jobs. */
  storage?: { noteFailure(err: unknown): boolean };
  /** Ops events (verdicts, deliveries) for metrics. */
  onEvent?(e: MinerEvent): void;
  /** What a failed coordinator call means (default: `decide`). */
  retryRule?: RetryRule;
  /** A failure verdict was acknowledged (upstream frees the slot only on the next heartbeat). */
  onFailureAcknowledged?(jobId: string): void;
}

export interface ReporterStats {
  failed: number;
  failuresByCode: Record<string, number>;
  submitted: number;
  dropped: number;
}

export class Reporter {
  private readonly log: Logger;
  private readonly submitting = new Map<string, Promise<void>>();
  private readonly failing = new Map<string, Promise<void>>();
  /** Failure reports a later hand-out of the same id made moot: their loops stop at once. */
  private readonly superseded = new Map<string, AbortController>();
  /** Each result delivery's stop (withdraw) and how it ended. */
  private readonly deliveries = new Map<string, { stop: AbortController; outcome: Promise<boolean> }>();
  private readonly stats: ReporterStats = { failed: 0, failuresByCode: {}, submitted: 0, dropped: 0 };

  private readonly retryRule: RetryRule;

  constructor(private readonly d: ReporterDeps) {
    this.log = d.log;
    this.retryRule = d.retryRule ?? decide;
  }

  snapshot(): ReporterStats & { pendingResults: number; pendingFailures: number } {
    return {
      ...this.stats,
      failuresByCode: { ...this.stats.failuresByCode },
      pendingResults: this.submitting.size,
      pendingFailures: this.failing.size,
    };
  }

  /** Whether a result for this job is still being delivered. */
  isSubmitting(jobId: string): boolean {
    return this.submitting.has(jobId);
  }

  /** Whether a failure report for this job is still being delivered. */
  isFailing(jobId: string): boolean {
    return this.failing.has(jobId);
  }

  /** Jobs whose verdict (result or failure) the coordinator has not acknowledged yet. */
  *pendingIds(): Iterable<string> {
    yield* this.submitting.keys();
    yield* this.failing.keys();
  }

  /**
   * Stop delivering a failure report for `jobId` because the coordinator handed the job out
   * again: the old verdict must never reach (and fail) the new hand-out. Resolves once its loop
   * has stopped; the new hand-out's journal entry then replaces the failure's.
   */
  async supersede(jobId: string): Promise<void> {
    const loop = this.failing.get(jobId);
    if (!loop) return;
    const stop = this.superseded.get(jobId);
    stop?.abort();
    await loop;
  }

  /** Deliver what is pending within `timeoutMs` (one more try for each now); the rest stays on disk. */
  async flush(timeoutMs: number): Promise<void> {
    this.flushDeadline = monotonicNow() + timeoutMs;
    this.flushing = true;
    this.flushStart.abort();
    const timer = setTimeout(() => this.flushAbort.abort(), timeoutMs);
    await within(Promise.all([...this.submitting.values(), ...this.failing.values()]), timeoutMs + 500);
    clearTimeout(timer);
    this.flushAbort.abort();
  }

  /**
   * Fail a job at the coordinator. The verdict is journaled first, so a report that cannot be made
   * now (coordinator down, miner restarting) is made later: the job is never left hanging.
   */
  async fail(jobId: string, errorCode: FailureCode, message: string): Promise<void> {
    this.stats.failed++;
    this.stats.failuresByCode[errorCode] = (this.stats.failuresByCode[errorCode] ?? 0) + 1;
    this.d.onEvent?.({ type: "job_failed", errorCode });
    const now = Date.now(); // journaled: wall time, which means something after a restart
    await this.d.journal
      .record({
        jobId,
        payload: null,
        constraints: null,
        claimedAt: now,
        deadlineAt: now,
        failure: { errorCode, message },
      })
      .catch((err: unknown) => {
        // Not durable, but still reported from memory now.
        this.d.storage?.noteFailure(err);
        this.log.error(
          { event: "journal_failed", jobId, err: describeError(err) },
          "could not journal a failed job; reporting it from memory",
        );
      });
    // A line in the receipts log, so the earnings report counts failures too (not awaited: the
    // report to the coordinator does not wait for the operator's record).
    this.d
      .recordReceipt({ kind: "failure", jobId, receipt: null, verified: null, reason: errorCode })
      .catch((err: unknown) => this.d.storage?.noteFailure(err));
    this.resendFailure(jobId, errorCode, message);
  }

  resendFailure(jobId: string, errorCode: string, message: string): void {
    if (this.failing.has(jobId)) return;
    const stop = new AbortController();
    this.superseded.set(jobId, stop);
    const p = this.failLoop(jobId, errorCode, message, stop.signal)
      .catch((err: unknown) =>
        this.log.error(
          { event: "fail_report_crashed", jobId, err: describeError(err) },
          "fail report loop failed",
        ),
      )
      .finally(() => {
        this.failing.delete(jobId);
        this.superseded.delete(jobId);
      });
    this.failing.set(jobId, p);
  }

  private async failLoop(
    jobId: string,
    errorCode: string,
    message: string,
    superseded: AbortSignal,
  ): Promise<void> {
    const backoff = backoffFor("fail");
    let acknowledged = false;
    for (;;) {
      if (superseded.aborted) {
        this.log.info(
          { event: "fail_report_superseded", jobId },
          "failure report dropped: the job was handed out again",
        );
        return;
      }
      try {
        await this.d.client.fail(jobId, errorCode, message);
        acknowledged = true;
        break;
      } catch (err) {
        const verdict = this.retryRule(err, "fail", backoff);
        if (verdict.kind === "gone") break;
        if (verdict.kind === "rejected" || verdict.kind === "fatal") {
          this.log.warn(
            { event: "fail_report_rejected", jobId, err: describeError(err) },
            "coordinator refused a failure report",
          );
          break;
        }
        if (this.flushing && this.flushDeadlinePassed()) {
          this.log.warn(
            { event: "fail_report_deferred", jobId },
            "failure report stays in the journal for the next start",
          );
          return;
        }
        const delay = verdict.afterMs;
        this.log.warn(
          { event: "fail_report_retry", jobId, err: describeError(err), retryInMs: delay },
          "failure report failed; will retry",
        );
        await this.pause(delay, superseded);
      }
    }
    if (superseded.aborted) return;
    // Only the failure's own entry: a later hand-out of this id may already be journaled.
    await this.forget(() => this.d.journal.removeFailure(jobId), jobId);
    if (acknowledged) this.d.onFailureAcknowledged?.(jobId);
  }

  /**
   * Write a delivered verdict's removal to its log; a disk that refuses only leaves the record,
   * which the next start sends again (the coordinator answers "already done").
   */
  private async forget(remove: () => Promise<void>, jobId: string): Promise<void> {
    try {
      await remove();
    } catch (err) {
      this.d.storage?.noteFailure(err);
      this.log.warn(
        { event: "state_cleanup_failed", jobId, err: describeError(err) },
        "a delivered verdict's record could not be removed; it is sent again on the next start",
      );
    }
  }

  /**
   * Stop delivering `jobId`'s result before its next try (the coordinator cancelled the job: a
   * result would complete and bill it again). Resolves true when the result was never accepted,
   * false when there was no delivery or it was accepted meanwhile (a try already on its way cannot
   * be called back). The outbox record is the caller's to remove.
   */
  async withdraw(jobId: string): Promise<boolean> {
    const d = this.deliveries.get(jobId);
    if (!d) return false;
    d.stop.abort();
    return await d.outcome;
  }

  submit(result: CompletedJob): void {
    if (this.submitting.has(result.jobId)) return;
    const stop = new AbortController();
    const outcome = this.submitLoop(result, stop.signal).catch((err: unknown) => {
      this.log.error(
        { event: "submit_crashed", jobId: result.jobId, err: describeError(err) },
        "submit loop failed",
      );
      return false;
    });
    const p = outcome
      .then(() => undefined)
      .finally(() => {
        this.submitting.delete(result.jobId);
        this.deliveries.delete(result.jobId);
      });
    this.deliveries.set(result.jobId, { stop, outcome });
    this.submitting.set(result.jobId, p);
  }

  /** Resolves true only when withdrawn before the coordinator accepted it. */
  private async submitLoop(result: CompletedJob, withdrawn: AbortSignal): Promise<boolean> {
    const log = this.log.child({ jobId: result.jobId });
    const backoff = backoffFor("submit");
    for (;;) {
      if (withdrawn.aborted) return true;
      try {
        const ack = await this.d.client.submit(result);
        await this.onAccepted(result, ack);
        return false;
      } catch (err) {
        const verdict = this.retryRule(err, "submit", backoff);
        if (verdict.kind === "gone") {
          // 409: already completed (possibly by our own earlier try whose answer was lost). 404: job gone.
          await this.settled(result);
          if (verdict.alreadyDone) this.stats.submitted++;
          else this.stats.dropped++;
          this.d.onEvent?.({
            type: "result_delivered",
            answer: verdict.alreadyDone ? "already_done" : "gone",
          });
          log.info(
            { event: verdict.alreadyDone ? "submit_already_done" : "submit_job_gone" },
            "coordinator no longer needs this result",
          );
          return false;
        }
        if (verdict.kind === "rejected" || verdict.kind === "fatal") {
          const status = verdict.kind === "rejected" ? verdict.status : null;
          const why = (err as Error).message;
          const path = await this.d.outbox.reject(result, why).catch((e: unknown) => {
            this.d.storage?.noteFailure(e);
            return null;
          });
          this.stats.dropped++;
          this.d.onEvent?.({ type: "result_delivered", answer: "rejected" });
          log.error(
            { event: "submit_rejected", status, keptAt: path },
            "coordinator rejected the result; kept for inspection, and the job is failed so its slot is freed",
          );
          // A refused result still leaves the job RUNNING there: a failure verdict closes it.
          await this.fail(
            result.jobId,
            "result_rejected",
            `the coordinator refused the result (HTTP ${status}): ${why}`,
          );
          return false;
        }
        if (withdrawn.aborted) return true;
        if (this.flushing && this.flushDeadlinePassed()) {
          log.warn({ event: "submit_deferred" }, "result stays in the outbox for the next start");
          return false;
        }
        const delay = verdict.afterMs;
        log.warn(
          {
            event: "submit_retry",
            err: describeError(err),
            retryInMs: delay,
            attempt: backoff.attempts,
            resultsPending: this.submitting.size,
          },
          "submit failed; will retry",
        );
        await this.pause(delay, withdrawn);
      }
    }
  }

  /**
   * The coordinator has this result's verdict: it leaves the outbox, and its claim the journal (a
   * claim stays there when the result could not be written to the outbox; left behind, a restart
   * would run the job again).
   */
  private async settled(result: CompletedJob): Promise<void> {
    await this.forget(() => this.d.outbox.remove(result.jobId), result.jobId);
    await this.forget(
      () => this.d.journal.removeSettledClaim(result.jobId, result.completedAt),
      result.jobId,
    );
  }

  private async onAccepted(result: CompletedJob, ack: SubmitAck): Promise<void> {
    await this.settled(result);
    this.stats.submitted++;
    const check =
      ack.coordinatorReceiptText !== null ? this.d.checkCoordinatorReceipt(ack.coordinatorReceiptText) : null;
    // Units and amount feed the earnings counters (the signed figures when the receipt has them).
    this.d.onEvent?.({
      type: "result_delivered",
      answer: "accepted",
      ...earnedBy(ack.billed, check?.receipt),
    });
    let verified: boolean | null = null;
    if (check !== null) {
      verified = check.verified;
      await this.d
        .recordReceipt({
          kind: "coordinator",
          jobId: result.jobId,
          receipt: check.receipt,
          verified: check.verified,
          reason: check.reason,
        })
        // The receipts log is a state file too: one that cannot be written pauses mining.
        .catch((err: unknown) => this.d.storage?.noteFailure(err));
      if (check.verified === false) {
        this.log.error(
          { event: "coordinator_receipt_invalid", jobId: result.jobId, reason: check.reason },
          "coordinator receipt failed verification",
        );
      }
    }
    this.log.info(
      {
        event: "submitted",
        jobId: result.jobId,
        status: ack.status,
        coordinatorReceipt: verified,
        resultsPending: this.submitting.size - 1,
      },
      "result accepted",
    );
  }

  private flushDeadline = Number.POSITIVE_INFINITY;
  private flushAbort = new AbortController();
  private readonly flushStart = new AbortController();
  private flushing = false;

  private flushDeadlinePassed(): boolean {
    return monotonicNow() >= this.flushDeadline;
  }

  private flushMsLeft(): number {
    return Math.max(0, this.flushDeadline - monotonicNow());
  }

  /**
   * Wait between retries. Shutdown's flush wakes every waiting loop at once (one more try now),
   * and from then on no wait outlasts the flush window.
   */
  private pause(ms: number, also?: AbortSignal): Promise<boolean> {
    const signal = (s: AbortSignal) => (also ? AbortSignal.any([s, also]) : s);
    if (this.flushing) return sleep(Math.min(ms, this.flushMsLeft()), signal(this.flushAbort.signal));
    return sleep(ms, signal(this.flushStart.signal));
  }
}
