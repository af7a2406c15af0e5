// Cancelled work stops (docs/operations.md#cancellation-and-orphans). While a job has run a while,
// or its result waits to be delivered, the miner asks the coordinator every few seconds whether it
// still runs those jobs for it (one question for all of them: aitbc lists its RUNNING jobs, claim
// reads each job); a job it no longer runs for us (a client cancelled it, it went to another miner)
// is aborted, its slot freed, and its result never sent: upstream would complete and bill a
// cancelled job again. The journal records the cancel, so a restart neither resumes nor submits it.
import { monotonicNow } from "../clock.js";
import type { CoordinatorClient } from "../coordinator/types.js";
import { describeError } from "../describe-error.js";
import type { Logger } from "../log.js";
import type { MinerEvent } from "../ops/events.js";
import type { ClaimJournal } from "./journal.js";
import type { Outbox } from "./outbox.js";
import type { Reporter } from "./reporter.js";

/** How sparingly the miner asks (the ask is not a poll, so it spends no poll budget). */
export interface CancelCheckTiming {
  /** At most one question per this many ms. */
  intervalMs: number;
  /** Only about jobs running (or results waiting) at least this long: most jobs end before. */
  minAgeMs: number;
  /** After an answer that cannot say (no such route), ask again only after this long. */
  unknownBackoffMs: number;
}

export const DEFAULT_CANCEL_CHECK: CancelCheckTiming = {
  intervalMs: 5000,
  minAgeMs: 5000,
  unknownBackoffMs: 60_000,
};

/** The abort reason of a job the coordinator no longer runs for us. */
export const CANCELLED = "cancelled";

export interface CancelWatchDeps {
  client: Pick<CoordinatorClient, "jobsNoLongerOurs">;
  journal: Pick<ClaimJournal, "recordCancelled" | "remove">;
  outbox: Pick<Outbox, "remove">;
  reporter: Pick<Reporter, "withdraw" | "pendingIds" | "isSubmitting">;
  log: Logger;
  /** Told about failed writes (a full disk pauses mining). */
  storage?: { noteFailure(err: unknown): boolean } | undefined;
  /** Ends every wait and question (the miner stops). */
  signal: AbortSignal;
  /** A cancelled job has let go of its slot: upstream frees the slot only when a heartbeat says so. */
  onCancelled?(jobId: string): void;
  /** Ops events: each cancellation counts (aitbc_miner_jobs_cancelled_total). */
  onEvent?(e: MinerEvent): void;
  timing?: Partial<CancelCheckTiming> | undefined;
}

/** What a job's run asks (run-job.ts). */
export interface JobCancels {
  isCancelled(jobId: string): boolean;
  /**
   * Record a cancelled job's end: the journal's marker replaces its claim (durably), and a result
   * in the outbox (`resultStored`) is dropped. Never rejects.
   */
  settle(jobId: string, resultStored: boolean): Promise<void>;
}

interface Tracked {
  abort: AbortController;
  since: number;
}

export class CancelWatch implements JobCancels {
  private readonly timing: CancelCheckTiming;
  private readonly running = new Map<string, Tracked>();
  private readonly cancelled = new Set<string>();
  /** Results seen waiting for delivery at the last look (one interval old by the next). */
  private waiting = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private nextAskAt = 0;
  private unknownSaid = false;

  constructor(private readonly d: CancelWatchDeps) {
    this.timing = { ...DEFAULT_CANCEL_CHECK, ...d.timing };
    d.signal.addEventListener("abort", () => this.disarm(), { once: true });
  }

  /** A job started running with this controller. */
  track(jobId: string, abort: AbortController): void {
    if (!this.d.client.jobsNoLongerOurs) return;
    this.running.set(jobId, { abort, since: monotonicNow() });
    this.arm();
  }

  /** The job's run ended (whatever the verdict). */
  untrack(jobId: string): void {
    this.running.delete(jobId);
    // Its slot is free only now: a heartbeat sent earlier would still count the job.
    if (this.cancelled.delete(jobId)) this.d.onCancelled?.(jobId);
  }

  isCancelled(jobId: string): boolean {
    return this.cancelled.has(jobId);
  }

  async settle(jobId: string, resultStored: boolean): Promise<void> {
    const note = (err: unknown) => {
      this.d.storage?.noteFailure(err);
    };
    try {
      await this.d.journal.recordCancelled(jobId, Date.now());
    } catch (err) {
      note(err);
      this.d.log.warn(
        { event: "journal_failed", jobId, err: describeError(err) },
        "could not journal a cancelled job; a restart asks the coordinator before resuming it",
      );
      if (resultStored) await this.d.outbox.remove(jobId).catch(note);
      return;
    }
    if (resultStored) {
      // The marker stays until the next start: a lost (unsynced) removal from the outbox must not
      // bring the result back without it.
      await this.d.outbox.remove(jobId).catch(note);
      return;
    }
    // Nothing to resend: the marker has replaced the claim, and a lost removal only leaves it.
    await this.d.journal.remove(jobId).catch(note);
  }

  /** One look every interval while there is something to ask about. */
  private arm(): void {
    if (this.timer || this.d.signal.aborted) return;
    this.timer = setTimeout(() => void this.tick(), this.timing.intervalMs);
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private async tick(): Promise<void> {
    this.timer = null;
    try {
      if (monotonicNow() >= this.nextAskAt) await this.ask();
    } catch (err) {
      this.d.log.warn({ event: "cancel_check_failed", err: describeError(err) }, "cancel check failed");
    }
    const waiting = [...this.d.reporter.pendingIds()].some((id) => this.d.reporter.isSubmitting(id));
    if (this.running.size > 0 || waiting) this.arm();
  }

  /** One question about every job old enough, then act on the answer. */
  private async ask(): Promise<void> {
    const now = monotonicNow();
    const ids = new Set<string>();
    for (const [id, t] of this.running)
      if (now - t.since >= this.timing.minAgeMs && !this.cancelled.has(id)) ids.add(id);
    const waitingNow = new Set(
      [...this.d.reporter.pendingIds()].filter((id) => this.d.reporter.isSubmitting(id)),
    );
    for (const id of waitingNow) if (this.waiting.has(id)) ids.add(id);
    this.waiting = waitingNow;
    if (ids.size === 0 || !this.d.client.jobsNoLongerOurs) return;
    this.nextAskAt = now + this.timing.intervalMs;
    let gone: string[] | null;
    try {
      gone = await this.d.client.jobsNoLongerOurs([...ids], this.d.signal);
    } catch (err) {
      if (this.d.signal.aborted) return;
      this.d.log.debug(
        { event: "cancel_check_failed", err: describeError(err) },
        "could not ask about running jobs",
      );
      return;
    }
    if (gone === null) {
      this.nextAskAt = now + this.timing.unknownBackoffMs;
      if (!this.unknownSaid)
        this.d.log.info(
          { event: "cancel_check_unavailable" },
          "the coordinator cannot say whether it still runs our jobs: a cancelled job runs to its end",
        );
      this.unknownSaid = true;
      return;
    }
    for (const id of gone) if (ids.has(id) && !this.d.signal.aborted) await this.cancel(id);
  }

  private async cancel(jobId: string): Promise<void> {
    if (this.d.reporter.isSubmitting(jobId)) {
      // Its result is on its way: withdraw it, unless the coordinator took it meanwhile (then it
      // was listed as no longer running because it was done, not cancelled).
      if (!(await this.d.reporter.withdraw(jobId))) return;
      await this.settle(jobId, true);
      this.said(jobId, "delivering");
      return;
    }
    const run = this.running.get(jobId);
    if (!run || this.cancelled.has(jobId)) return;
    // The run settles it (run-job.ts): the generation aborts, or a result not yet sent is dropped.
    this.cancelled.add(jobId);
    run.abort.abort(CANCELLED);
    this.said(jobId, "running");
  }

  private said(jobId: string, stage: "running" | "delivering"): void {
    this.d.log.info(
      { event: "job_cancelled", jobId, stage },
      stage === "running"
        ? "the coordinator no longer runs this job for this miner (cancelled or reassigned): generation aborted, no result will be sent"
        : "the coordinator no longer runs this job for this miner (cancelled or reassigned): its result is not sent",
    );
    try {
      this.d.onEvent?.({ type: "job_cancelled", stage });
    } catch {
      // Metrics never stop mining.
    }
    if (stage === "delivering") this.d.onCancelled?.(jobId);
  }
}
