// The miner loop: register → heartbeat → poll → run → receipt → outbox → submit.
// Every next step is decided from local state (journal, outbox) plus the coordinator's answer,
// so a lost reply or a restart is harmless (docs/architecture.md#durability-rules).

import { join } from "node:path";
import { within } from "../backoff.js";
import { monotonicNow } from "../clock.js";
import type { Job } from "../coordinator/types.js";
import type { Logger } from "../log.js";
import type { MinerEvent } from "../ops/events.js";
import type { WorkerGauges } from "../ops/metrics.js";
import { ExitCode } from "./exit-codes.js";
import type { ClaimedJob } from "./journal.js";
import { localPollBudget, PollLoop } from "./poll-loop.js";
import { Registration } from "./registration.js";
import { Reporter } from "./reporter.js";
import { decide, type RetryRule } from "./retry.js";
import { openState, warmUp } from "./start-up.js";
import { StateStorage } from "./state-storage.js";
import { stopMining } from "./stop.js";
import {
  type MinerDeps,
  type MinerExit,
  MinerFatalError,
  type MinerHealth,
  type MinerSettings,
  type MinerStats,
  POLL_ABORT_WAIT_MS,
  shutdownBudgetMs,
} from "./types.js";

export type { CoordinatorReceiptCheck, ReceiptRecord } from "./reporter.js";

import { HeartbeatSchedule } from "./heartbeat.js";
import { type JobWatch, watchJobs } from "./job-watch.js";
import { LoopWatch } from "./loop-watch.js";
import { recover } from "./recover.js";
import { type JobContext, jobDeadline, runJob } from "./run-job.js";
import { Waker } from "./waker.js";
import type { AbortWhy } from "./watchdog.js";

export * from "./types.js";

interface Running {
  abort: AbortController;
  done: Promise<void>;
  /** When the job must have ended (its deadline, or a resumed job's), on the monotonic clock. */
  deadlineAt: number;
}

export class Miner {
  private readonly s: MinerSettings;
  private readonly log: Logger;
  private stopping = false;
  private readonly stopSignal = new AbortController();
  private readonly inflight = new Map<string, Running>();
  /** Ends the loop's current wait for a free slot or a servable model. */
  private readonly waker = new Waker();
  private readonly membership: Registration;
  private fatal: MinerFatalError | null = null;
  private exitResolve: ((e: MinerExit) => void) | null = null;
  private shutdownPromise: Promise<MinerExit> | null = null;
  private polling: Promise<void> | null = null;
  /** Delivers results and failure verdicts to the coordinator until acknowledged. */
  private readonly reporter: Reporter;
  private readonly stats = { completed: 0, tokens: 0, promptTokens: 0, busySeconds: 0 };
  private readonly storage: StateStorage;
  private readonly retryRule: RetryRule;
  private readonly heartbeats: HeartbeatSchedule;
  /** The loop's progress and each kind of work's own deadline, for /healthz and /readyz. */
  private readonly watch: LoopWatch;
  /** Cancelled jobs stop; no job is left orphaned after a failed poll (job-watch.ts). */
  private readonly jobWatch: JobWatch;

  /** What a job's run needs from the loop (see run-job.ts). */
  private get jobContext(): JobContext {
    return {
      d: this.d,
      s: this.s,
      log: this.log,
      reporter: this.reporter,
      storage: this.storage,
      stats: this.stats,
      emit: (e) => this.emit(e),
      cancels: this.jobWatch.cancels,
    };
  }

  constructor(private readonly d: MinerDeps) {
    this.s = d.settings;
    this.log = d.log;
    this.storage = d.storage ?? new StateStorage(join(d.outbox.dir, ".tmp"), d.log);
    this.retryRule = d.retryRule ?? decide;
    this.watch = new LoopWatch(d.settings.health);
    this.membership = new Registration({
      d,
      s: this.s,
      log: this.log,
      retryRule: this.retryRule,
      stopSignal: this.stopSignal.signal,
      isStopping: () => this.stopping,
      inflight: () => {
        const ids = new Set(this.inflight.keys());
        for (const id of this.reporter.pendingIds()) ids.add(id);
        return ids.size;
      },
      stats: () => this.snapshot(),
      onFatal: (err) => this.fail(err),
    });
    this.heartbeats = new HeartbeatSchedule(d.settings.heartbeatIntervalMs, () =>
      this.membership.heartbeat(),
    );
    this.reporter = new Reporter({
      ...d,
      retryRule: this.retryRule,
      onEvent: (e) => this.emit(e),
      storage: this.storage,
      // Upstream frees a slot on /fail only when a heartbeat says so: send one at once.
      onFailureAcknowledged: () => this.beatSoon(),
    });
    const signal = this.stopSignal.signal;
    const onCancelled = () => this.beatSoon();
    this.jobWatch = watchJobs({ d, reporter: this.reporter, storage: this.storage, signal, onCancelled });
  }

  private emit(e: MinerEvent): void {
    try {
      this.d.onEvent?.(e);
    } catch {
      // Metrics never stop mining.
    }
  }

  /** For /healthz and /readyz (see health.ts); `now` on the monotonic clock. */
  health(now = monotonicNow()): MinerHealth {
    const facts = {
      fatal: this.fatal?.message ?? null,
      jobs: [...this.inflight].map(([jobId, r]) => ({ jobId, deadlineAt: r.deadlineAt })),
      backend: this.d.backend.progress?.() ?? null,
      stopping: this.stopping,
      registered: this.membership.registered,
      servableModels: this.d.backend.listModels().length,
      stateWritable: this.storage.writable,
    };
    return this.watch.health(facts, this.s.abortGraceMs, now);
  }

  /** The figures ops gauges show, read at scrape time. */
  async gauges(): Promise<WorkerGauges> {
    return {
      inflight: this.inflight.size,
      pendingSubmissions: this.reporter.snapshot().pendingResults,
      outboxFiles: await this.d.outbox.depth().catch(() => 0),
      stateWritable: this.storage.writable,
      registered: this.membership.registered,
      servableModels: this.d.backend.listModels().length,
    };
  }

  snapshot(): MinerStats {
    const r = this.reporter.snapshot();
    return {
      ...this.stats,
      failed: r.failed,
      failuresByCode: r.failuresByCode,
      submitted: r.submitted,
      dropped: r.dropped,
      inflight: this.inflight.size,
      pendingSubmissions: r.pendingResults,
      stateWritable: this.storage.writable,
    };
  }

  /** Run until stopped: resolves with the exit code the process should use. */
  async run(): Promise<MinerExit> {
    const exited = new Promise<MinerExit>((resolve) => {
      this.exitResolve = resolve;
    });
    try {
      if (this.watch.badLimits) throw new MinerFatalError(this.watch.badLimits, ExitCode.badSettings);
      await openState(this.storage, this.d);
      await this.membership.register();
      if (this.stopping) return await exited;
      const settle = await recover({
        d: this.d,
        log: this.log,
        reporter: this.reporter,
        isStopping: () => this.stopping,
        startJob: (job, claimed) => this.startJob(job, claimed),
        signal: this.stopSignal.signal,
        inHand: () => this.inflight.keys(),
      });
      this.jobWatch.orphans.use(settle);
      if (this.stopping) return await exited;
      if (!this.stopping) this.heartbeats.start();
      this.watch.warmUpStarted();
      const warm = warmUp(this.d, this.stopSignal.signal, this.log).finally(() => this.watch.warmUpEnded());
      this.polling = this.pollLoop(warm);
      await this.polling;
    } catch (err) {
      if (err instanceof MinerFatalError) this.fatal ??= err;
      else
        this.fatal ??= new MinerFatalError(
          `unexpected: ${(err as Error)?.stack ?? String(err)}`,
          ExitCode.unexpected,
        );
      void this.shutdown(this.fatal.message);
    }
    return await exited;
  }

  /** Register again (e.g. the models this miner can serve changed) so the coordinator matches jobs on facts. */
  async updateRegistration(): Promise<void> {
    if (!this.membership.registered || this.stopping) return;
    await this.membership.register().catch((err: unknown) => this.fail(err));
    this.wake(); // a loop waiting for a servable model looks again now
  }

  /** Graceful stop (SIGTERM/SIGINT): finish or fail in-flight jobs, flush the outbox, deregister. */
  shutdown(reason: string): Promise<MinerExit> {
    this.shutdownPromise ??= this.doShutdown(reason);
    return this.shutdownPromise;
  }

  /**
   * This worker's card stops taking jobs (src/fleet/gpu-drain.ts): stop polling, fail what runs
   * with gpu_unavailable when the card cannot finish it (else let it finish within the grace
   * period), deregister and exit like a clean stop.
   */
  drain(reason: string, failRunning: boolean): Promise<MinerExit> {
    const exit = this.shutdown(`drained: ${reason}`);
    if (failRunning)
      for (const r of this.inflight.values()) r.abort.abort("gpu_unavailable" satisfies AbortWhy);
    return exit;
  }

  /** A heartbeat out of turn (coalesced, spaced). */
  private beatSoon(): void {
    if (!this.stopping) this.heartbeats.soon();
  }

  // ---------------------------------------------------------------- polling

  private pollLoop(warm: Promise<void>): Promise<void> {
    return new PollLoop({
      d: this.d,
      s: this.s,
      log: this.log,
      watch: this.watch,
      reporter: this.reporter,
      storage: this.storage,
      membership: this.membership,
      retryRule: this.retryRule,
      budget: this.d.pollBudget ?? localPollBudget(this.s, this.log),
      signal: this.stopSignal.signal,
      isStopping: () => this.stopping,
      freeSlots: () => this.s.concurrency - this.inflight.size,
      waitForWake: (ms) => this.waitForWake(ms),
      takeHandout: (job) => this.takeHandout(job),
      emit: (e) => this.emit(e),
      beatSoon: () => this.beatSoon(),
      afterPollError: (err) => this.jobWatch.orphans.afterPollError(err),
    }).run(warm);
  }

  /**
   * One owner per job id at a time. A re-handed id whose verdict is still on its way:
   * - a failure report still retrying is superseded (the coordinator has moved on: it handed the
   *   job out again), so it can never fail this new hand-out; then the job runs;
   * - a result still being submitted, or a run in progress, already answers it: that delivery is
   *   the verdict for this hand-out too.
   */
  private async takeHandout(job: Job): Promise<void> {
    const jobId = job.jobId;
    if (this.inflight.has(jobId) || this.reporter.isSubmitting(jobId)) {
      this.log.info(
        { event: "job_rehanded", jobId, answeredBy: this.inflight.has(jobId) ? "run" : "result" },
        "the coordinator handed over a job already in hand; its verdict answers this hand-out",
      );
      return;
    }
    if (this.reporter.isFailing(jobId)) {
      this.log.info(
        { event: "job_rehanded", jobId, answeredBy: "new_run" },
        "the coordinator handed over a job whose failure report was still pending; that report is dropped and the job runs",
      );
      await this.reporter.supersede(jobId);
    }
    this.startJob(job, null);
  }

  /** Until a job finishes, shutdown begins (doShutdown calls wake()), or `ms` pass. */
  private waitForWake(ms = 60_000): Promise<void> {
    return this.stopping ? Promise.resolve() : this.waker.wait(ms);
  }

  private wake(): void {
    this.waker.wake();
  }

  // ---------------------------------------------------------------- running a job

  private startJob(job: Job, recovered: ClaimedJob | null): void {
    const abort = new AbortController();
    const deadlineAt = jobDeadline(recovered, this.s.jobTimeoutMs);
    const done = runJob(this.jobContext, job, recovered, abort, deadlineAt)
      .catch((err: unknown) => this.fail(err))
      .finally(() => {
        this.inflight.delete(job.jobId);
        this.wake();
      });
    this.inflight.set(job.jobId, { abort, done, deadlineAt });
  }

  // ---------------------------------------------------------------- shutdown

  private fail(err: unknown): void {
    if (this.fatal) return;
    this.fatal =
      err instanceof MinerFatalError
        ? err
        : new MinerFatalError(`unexpected: ${(err as Error)?.stack ?? String(err)}`, ExitCode.unexpected);
    this.log.fatal({ event: "fatal", reason: this.fatal.message }, "miner cannot continue");
    void this.shutdown(this.fatal.message);
  }

  private async doShutdown(reason: string): Promise<MinerExit> {
    const wedged = this.fatal?.exitCode === ExitCode.wedged;
    // One budget for the whole stop (grace, flush, deregister, backend): see shutdownBudgetMs.
    const deadline = monotonicNow() + shutdownBudgetMs(this.s);
    const left = (cap: number) => Math.max(0, Math.min(cap, deadline - monotonicNow()));
    this.stopping = true;
    this.stopSignal.abort(); // also aborts a poll in flight
    this.wake();
    this.log.info({ event: "shutdown", reason, inflight: this.inflight.size }, "stopping: no new jobs");

    // The aborted poll settles at once; a job it still handed over runs within the grace period
    // (or is failed back): then the rest of the stop (stop.ts).
    if (this.polling) await within(this.polling, POLL_ABORT_WAIT_MS);
    await stopMining({
      d: this.d,
      s: this.s,
      log: this.log,
      reporter: this.reporter,
      heartbeats: this.heartbeats,
      running: () => [...this.inflight.values()],
      registered: () => this.membership.registered,
      wedged,
      left,
    });
    // Nothing writes to the state after this (a wedged job's late result would be failed back).
    await Promise.all([this.d.outbox.close(), this.d.journal.close()]);
    const exit: MinerExit = this.fatal
      ? { code: this.fatal.exitCode, reason: this.fatal.message }
      : { code: ExitCode.ok, reason };
    this.log.info({ event: "stopped", exitCode: exit.code, stats: this.snapshot() }, "miner stopped");
    this.exitResolve?.(exit);
    return exit;
  }
}
