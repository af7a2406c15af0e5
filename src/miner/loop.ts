// The miner loop: register → heartbeat → poll → run → receipt → outbox → submit.
// Every next step is decided from local state (journal, outbox) plus the coordinator's answer,
// so a lost reply or a restart is harmless (docs/architecture.md#durability-rules).

import { join } from "node:path";
import {
  type Backend,
  BackendError,
  type InferenceRequest,
  type InferenceResult,
} from "../backends/types.js";
import { Backoff, sleep, within } from "../backoff.js";
import { CoordinatorError, UnusableJobError } from "../coordinator/errors.js";
import type { Capabilities, CompletedJob, CoordinatorClient, Job } from "../coordinator/types.js";
import { describeError } from "../describe-error.js";
import type { Logger } from "../log.js";
import type { MinerEvent, PollResult } from "../ops/events.js";
import type { WorkerGauges } from "../ops/metrics.js";
import type { MinerReceiptInput } from "../receipts/receipt.js";
import { ExitCode } from "./exit-codes.js";
import type { ClaimedJob, ClaimJournal } from "./journal.js";
import type { Outbox } from "./outbox.js";
import { PollBudget } from "./poll-budget.js";
import { type CoordinatorReceiptCheck, type ReceiptRecord, Reporter } from "./reporter.js";
import { decide, type RetryRule } from "./retry.js";
import { checkConstraints, type HostFacts, type JobLimits, validatePayload } from "./screening.js";
import { isStorageError, StateStorage, StateStorageError } from "./state-storage.js";
import { type AbortWhy, generateWithDeadline, WedgedError } from "./watchdog.js";

export interface MinerSettings {
  minerId: string;
  concurrency: number;
  heartbeatIntervalMs: number;
  /**
   * The coordinator's poll budget: at most this many polls in any `pollWindowMs` (Infinity: no
   * known limit, learned from 429s). Polls burst while they return jobs, within the budget.
   */
  pollsPerWindow: number;
  pollWindowMs: number;
  /** Spacing of polls while no job comes back (the budget spread evenly over its window). */
  idlePollIntervalMs: number;
  /** max_wait_seconds sent with each poll: a coordinator that holds polls answers when a job comes. */
  longPollSeconds: number;
  jobTimeoutMs: number;
  gracePeriodMs: number;
  /** How long a backend may take to honour an abort before it is declared wedged. */
  abortGraceMs: number;
  /** On shutdown, how long to keep trying to submit what is in the outbox. */
  flushTimeoutMs: number;
  limits: JobLimits;
  unloadAfterJob: boolean;
}

/** What the miner's receipt is made from (the receipts module defines and signs it). */
export type ReceiptInput = MinerReceiptInput;

export type { CoordinatorReceiptCheck, ReceiptRecord } from "./reporter.js";

/** Everything the loop needs from the rest of the program, injected so each piece stays replaceable. */
export interface MinerDeps {
  settings: MinerSettings;
  client: CoordinatorClient;
  backend: Backend;
  outbox: Outbox;
  journal: ClaimJournal;
  log: Logger;
  capabilities(): Promise<Capabilities>;
  hostFacts(): Promise<HostFacts>;
  heartbeatMetadata(): Promise<Record<string, unknown>>;
  signReceipt(input: ReceiptInput): Record<string, unknown>;
  checkCoordinatorReceipt(rawText: string): CoordinatorReceiptCheck;
  recordReceipt(entry: ReceiptRecord): Promise<void>;
  /** VRAM admission: why the job cannot run here (before any model is loaded), or null to go ahead. */
  admit?(
    req: InferenceRequest,
  ): Promise<{ errorCode: "gpu_unavailable" | "insufficient_vram"; message: string } | null>;
  /** Around each job: e.g. check that VRAM came back. */
  jobMemoryProbe?(): Promise<() => Promise<void>>;
  /** GPU utilization/memory figures for a job's metrics. */
  jobMetrics?(): Promise<{ gpu_utilization: number | null; memory_used: number | null }>;
  /**
   * Start the inference runtime and load the models to serve, before the first job is taken (a
   * job right after a start is then as fast as the rest). Resolves with the models now warm.
   */
  warmUp?(signal: AbortSignal): Promise<string[]>;
  /** Ops events (jobs, deliveries, polls) for metrics. */
  onEvent?(e: MinerEvent): void;
  /** What a failed coordinator call means (default: `decide`, the one rule). */
  retryRule?: RetryRule;
  /** Whether the state directory takes writes (default: probed in the outbox's directory). */
  storage?: StateStorage;
}

/** Time allowed to deregister at shutdown, and to release the backend after it. */
const DEREGISTER_TIMEOUT_MS = 5000;
const BACKEND_CLOSE_TIMEOUT_MS = 5000;
/** An aborted poll settles at once; this only bounds a dialect that ignores the abort. */
const POLL_ABORT_WAIT_MS = 2000;
/** The least time between two heartbeats sent out of turn (after a failure, on a poll error). */
const EARLY_BEAT_SPACING_MS = 1000;
/** How often to re-probe a state directory that could not be written. */
const STORAGE_RECHECK_MS = 5000;
/** A poll answered no sooner than this was held open by the coordinator (long-poll). */
const LONG_POLL_HELD_MS = 1000;
/** How often to look again when no model can be served (the rescan also wakes the loop). */
const NO_MODEL_RECHECK_MS = 5000;

/** The abort grace and outbox flush `run` uses (tests and the demo shorten them). */
export const DEFAULT_ABORT_GRACE_MS = 10_000;
export const DEFAULT_FLUSH_TIMEOUT_MS = 10_000;

/** The longest a graceful stop of `run` can take with this grace period (seconds). */
export function runShutdownBudgetMs(gracePeriodS: number): number {
  return shutdownBudgetMs({
    gracePeriodMs: gracePeriodS * 1000,
    abortGraceMs: DEFAULT_ABORT_GRACE_MS,
    flushTimeoutMs: DEFAULT_FLUSH_TIMEOUT_MS,
  });
}

/**
 * The longest a graceful stop can take with these settings: the grace period, the abort grace for
 * jobs that outlive it, the outbox flush, deregistration and releasing the backend. A service
 * manager's stop timeout must cover it (see `service`).
 */
export function shutdownBudgetMs(
  s: Pick<MinerSettings, "gracePeriodMs" | "abortGraceMs" | "flushTimeoutMs">,
): number {
  return (
    POLL_ABORT_WAIT_MS +
    s.gracePeriodMs +
    s.abortGraceMs +
    1000 +
    s.flushTimeoutMs +
    DEREGISTER_TIMEOUT_MS +
    BACKEND_CLOSE_TIMEOUT_MS
  );
}

export interface MinerStats {
  completed: number;
  failuresByCode: Record<string, number>;
  promptTokens: number;
  busySeconds: number;
  failed: number;
  submitted: number;
  dropped: number;
  tokens: number;
  inflight: number;
  /** Results handed to the reporter and not yet acknowledged (memory, not the outbox's files). */
  pendingSubmissions: number;
  /** Whether the state directory takes writes; false stops new jobs. */
  stateWritable: boolean;
}

export type MinerExit = { code: number; reason: string };

export class MinerFatalError extends Error {
  override readonly name = "MinerFatalError";
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

interface Running {
  abort: AbortController;
  done: Promise<void>;
  /** When the job must have ended (its deadline, or a resumed job's). */
  deadlineAt: number;
}

/** For /healthz and /readyz: is the loop alive, and can it take jobs? */
export interface MinerHealth {
  live: boolean;
  ready: boolean;
  /** Why not, in words (empty when both hold). */
  reasons: string[];
}

export class Miner {
  private readonly s: MinerSettings;
  private readonly log: Logger;
  private stopping = false;
  private readonly stopSignal = new AbortController();
  private readonly inflight = new Map<string, Running>();
  private wakeUp: AbortController = new AbortController();
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private registered = false;
  private fatal: MinerFatalError | null = null;
  private exitResolve: ((e: MinerExit) => void) | null = null;
  private shutdownPromise: Promise<MinerExit> | null = null;
  private polling: Promise<void> | null = null;
  /** Delivers results and failure verdicts to the coordinator until acknowledged. */
  private readonly reporter: Reporter;
  private readonly stats = { completed: 0, tokens: 0, promptTokens: 0, busySeconds: 0 };
  private readonly storage: StateStorage;
  private readonly retryRule: RetryRule;
  private beating = false;
  private beatAgain = false;
  private lastBeatAt = 0;

  constructor(private readonly d: MinerDeps) {
    this.s = d.settings;
    this.log = d.log;
    this.storage = d.storage ?? new StateStorage(join(d.outbox.dir, ".tmp"), d.log);
    this.retryRule = d.retryRule ?? decide;
    this.reporter = new Reporter({
      ...d,
      retryRule: this.retryRule,
      onEvent: (e) => this.emit(e),
      storage: this.storage,
      // Upstream frees a slot on /fail only when a heartbeat says so: send one at once.
      onFailureAcknowledged: () => this.beatSoon(),
    });
  }

  private loopTickAt = Date.now();

  private emit(e: MinerEvent): void {
    try {
      this.d.onEvent?.(e);
    } catch {
      // Metrics never stop mining.
    }
  }

  /**
   * Live: not failed, the poll loop moved recently (or is waiting on full slots), and no job has
   * outlived its deadline plus the abort grace (a wedged backend). Ready: registered, a model to
   * serve, and a writable state directory.
   */
  health(now = Date.now()): MinerHealth {
    const reasons: string[] = [];
    let live = true;
    if (this.fatal) {
      live = false;
      reasons.push(`stopping after a fatal error: ${this.fatal.message}`);
    }
    const wedgeAfter = this.s.abortGraceMs + 5000;
    for (const [jobId, r] of this.inflight) {
      if (now > r.deadlineAt + wedgeAfter) {
        live = false;
        reasons.push(
          `job ${jobId} is ${Math.round((now - r.deadlineAt) / 1000)} s past its deadline: the backend is wedged`,
        );
      }
    }
    const slotsFull = this.inflight.size >= this.s.concurrency;
    const stalledFor = now - this.loopTickAt;
    const loopLimit = Math.max(120_000, 3 * this.s.idlePollIntervalMs) + this.s.longPollSeconds * 1000;
    if (!slotsFull && !this.stopping && this.registered && stalledFor > loopLimit) {
      live = false;
      reasons.push(`the poll loop has not moved for ${Math.round(stalledFor / 1000)} s`);
    }
    let ready = live && !this.stopping;
    if (!this.registered) {
      ready = false;
      reasons.push("not registered with the coordinator");
    }
    if (this.d.backend.listModels().length === 0) {
      ready = false;
      reasons.push("no model can be served");
    }
    if (!this.storage.writable) {
      ready = false;
      reasons.push("the state directory cannot be written");
    }
    if (this.stopping) reasons.push("stopping");
    return { live, ready, reasons };
  }

  /** The figures ops gauges show, read at scrape time. */
  async gauges(): Promise<WorkerGauges> {
    return {
      inflight: this.inflight.size,
      pendingSubmissions: this.reporter.snapshot().pendingResults,
      outboxFiles: await this.d.outbox.depth().catch(() => 0),
      stateWritable: this.storage.writable,
      registered: this.registered,
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
      await this.openState();
      await this.register();
      if (this.stopping) return await exited;
      await this.recover();
      if (this.stopping) return await exited;
      this.startHeartbeats();
      const warm = this.warmUp();
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

  /** Check the state directory, then open the outbox and journal; a full disk only pauses mining. */
  private async openState(): Promise<void> {
    try {
      await this.storage.checkAtStart();
    } catch (err) {
      if (err instanceof StateStorageError) throw new MinerFatalError(err.message, ExitCode.stateUnwritable);
      throw err;
    }
    for (const store of [this.d.outbox, this.d.journal]) {
      try {
        await store.open();
      } catch (err) {
        if (!this.storage.noteFailure(err)) throw err;
      }
    }
  }

  /** Register again (e.g. the models this miner can serve changed) so the coordinator matches jobs on facts. */
  async updateRegistration(): Promise<void> {
    if (!this.registered || this.stopping) return;
    await this.register().catch((err: unknown) => this.fail(err));
    this.wake(); // a loop waiting for a servable model looks again now
  }

  /** Graceful stop (SIGTERM/SIGINT): finish or fail in-flight jobs, flush the outbox, deregister. */
  shutdown(reason: string): Promise<MinerExit> {
    this.shutdownPromise ??= this.doShutdown(reason);
    return this.shutdownPromise;
  }

  // ---------------------------------------------------------------- registration & heartbeats

  private async register(): Promise<void> {
    const backoff = new Backoff({ baseMs: 500, capMs: 30_000 });
    for (;;) {
      if (this.stopping) return;
      try {
        const caps = await this.d.capabilities();
        await this.d.client.register(caps, this.s.concurrency);
        this.registered = true;
        this.log.info(
          {
            event: "registered",
            protocol: this.d.client.protocol,
            models: caps.models,
            platform: caps.platform,
            gpus: caps.gpus.length,
            concurrency: this.s.concurrency,
          },
          "registered with the coordinator",
        );
        return;
      } catch (err) {
        const verdict = this.retryRule(err, "register", backoff);
        if (verdict.kind === "fatal") throw new MinerFatalError(verdict.message, verdict.exitCode);
        const delay = verdict.kind === "retry" ? verdict.afterMs : backoff.next(null);
        this.log.warn(
          { event: "register_retry", err: describeError(err), retryInMs: delay },
          "registration failed; retrying",
        );
        await sleep(delay, this.stopSignal.signal);
      }
    }
  }

  private startHeartbeats(): void {
    if (this.stopping) return;
    this.heartbeatTimer = setTimeout(() => void this.beat(), 0);
    this.heartbeatTimer.unref();
  }

  /**
   * The in-flight count the coordinator should hold: jobs running plus verdicts not yet
   * acknowledged. Upstream *sets* its count from this, and frees a slot on /result but not on /fail.
   */
  private inflightForCoordinator(): number {
    const ids = new Set(this.inflight.keys());
    for (const id of this.reporter.pendingIds()) ids.add(id);
    return ids.size;
  }

  private async beat(): Promise<void> {
    if (this.beating) {
      this.beatAgain = true;
      return;
    }
    this.beating = true;
    if (this.heartbeatTimer !== null) clearTimeout(this.heartbeatTimer);
    try {
      this.lastBeatAt = Date.now();
      const metadata = await this.d.heartbeatMetadata();
      await this.d.client.heartbeat({
        inflight: this.inflightForCoordinator(),
        metadata: { ...metadata, miner: this.snapshot() },
      });
    } catch (err) {
      if (err instanceof CoordinatorError && err.kind === "not_found" && !this.stopping) {
        this.log.warn({ event: "reregister" }, "coordinator no longer knows this miner; registering again");
        this.registered = false;
        await this.register().catch((e: unknown) => this.fail(e));
      } else {
        this.log.warn({ event: "heartbeat_failed", err: describeError(err) }, "heartbeat failed");
      }
    } finally {
      this.beating = false;
      if (this.heartbeatTimer !== null) {
        const again = this.beatAgain;
        this.beatAgain = false;
        this.heartbeatTimer = setTimeout(
          () => void this.beat(),
          again ? EARLY_BEAT_SPACING_MS : this.s.heartbeatIntervalMs,
        );
        this.heartbeatTimer.unref();
      }
    }
  }

  /** A heartbeat out of turn, as soon as the spacing allows (coalesced). */
  private beatSoon(): void {
    if (this.heartbeatTimer === null || this.stopping) return;
    if (this.beating) {
      this.beatAgain = true;
      return;
    }
    clearTimeout(this.heartbeatTimer);
    const wait = Math.max(0, this.lastBeatAt + EARLY_BEAT_SPACING_MS - Date.now());
    this.heartbeatTimer = setTimeout(() => void this.beat(), wait);
    this.heartbeatTimer.unref();
  }

  private stopHeartbeats(): void {
    if (this.heartbeatTimer !== null) clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = null;
  }

  // ---------------------------------------------------------------- recovery

  /** Resubmit the outbox; rerun (or fail) what the journal says we had claimed. */
  private async recover(): Promise<void> {
    const { results, corrupt } = await this.d.outbox.pending();
    const journal = await this.d.journal.entries();
    for (const c of [...corrupt, ...journal.corrupt]) {
      const which = corrupt.includes(c) ? "outbox" : "journal";
      this.log.error(
        { event: `${which}_corrupt`, path: c.path, jobId: c.key, reason: c.reason },
        c.key
          ? `unreadable ${which} entry kept at ${c.path}; its job is failed back as miner_restarted`
          : `unreadable ${which} entry kept at ${c.path}; it names no job, so nothing can be reported`,
      );
      if (c.key)
        await this.reporter.fail(
          c.key,
          "miner_restarted",
          `the miner restarted and its ${which} record of this job was unreadable`,
        );
    }
    if (results.length > 0)
      this.log.info(
        { event: "outbox_recovered", count: results.length },
        "resubmitting results from the outbox",
      );
    const inOutbox = new Set(results.map((r) => r.jobId));
    for (const r of results) this.reporter.submit(r);

    for (const claimed of journal.jobs) {
      if (inOutbox.has(claimed.jobId)) {
        await this.d.journal.remove(claimed.jobId);
        continue;
      }
      if (claimed.failure) {
        // Already failed before the restart; only the report is left to make.
        this.reporter.resendFailure(claimed.jobId, claimed.failure.errorCode, claimed.failure.message);
        continue;
      }
      if (this.stopping) break;
      const left = claimed.deadlineAt - Date.now();
      if (left > 1000) {
        this.log.info(
          { event: "job_resumed", jobId: claimed.jobId, msLeft: left },
          "running a job claimed before the restart",
        );
        this.startJob(
          { jobId: claimed.jobId, payload: claimed.payload, constraints: claimed.constraints },
          claimed,
        );
      } else {
        this.log.warn(
          { event: "job_expired_on_restart", jobId: claimed.jobId },
          "claimed job past its deadline after restart",
        );
        await this.reporter.fail(
          claimed.jobId,
          "miner_restarted",
          "the miner restarted and the job's deadline has passed",
        );
      }
    }
  }

  // ---------------------------------------------------------------- polling

  /** Registration does not wait for this; the first poll does. */
  private async warmUp(): Promise<void> {
    if (!this.d.warmUp) return;
    const t0 = performance.now();
    try {
      const models = await this.d.warmUp(this.stopSignal.signal);
      this.log.info(
        { event: "models_warm", models, ms: Math.round(performance.now() - t0) },
        models.length > 0 ? `warm before the first job: ${models.join(", ")}` : "no model preloaded",
      );
    } catch (err) {
      this.log.warn(
        { event: "warm_up_failed", err: describeError(err) },
        "warm-up failed; models load on their first job instead",
      );
    }
  }

  private async pollLoop(warm: Promise<void> = Promise.resolve()): Promise<void> {
    await Promise.race([warm, sleep(2 ** 31 - 1, this.stopSignal.signal)]);
    const budget = new PollBudget(this.s.pollsPerWindow, this.s.pollWindowMs);
    const failBackoff = new Backoff({ baseMs: 500, capMs: 30_000 });
    /** When the next poll may go while idle: at once after a job, or after a held (long) poll. */
    let nextPollAt = 0;
    while (!this.stopping) {
      if (this.inflight.size >= this.s.concurrency) {
        await this.waitForWake();
        continue;
      }
      this.loopTickAt = Date.now();
      if (!(await this.readyToTakeJobs())) continue;
      const now = Date.now();
      const wait = Math.max(budget.waitMs(now), nextPollAt - now);
      if (wait > 0) {
        await sleep(wait, this.stopSignal.signal);
        continue;
      }
      budget.spend(now);
      let job: Job | null;
      try {
        job = await this.d.client.poll(this.s.longPollSeconds, this.stopSignal.signal);
        failBackoff.reset();
        this.loopTickAt = Date.now();
        this.emit({ type: "poll", result: job ? "job" : "empty" });
      } catch (err) {
        this.loopTickAt = Date.now();
        if (this.stopping) break;
        this.emit({ type: "poll", result: pollErrorResult(err) });
        if (err instanceof UnusableJobError) {
          // Handed over, so ours: fail it back (the slot is freed) and go on mining.
          this.log.warn(
            { event: "job_rejected", jobId: err.jobId, errorCode: err.failureCode, reason: err.message },
            "the coordinator handed over a job that cannot be used; failing it back",
          );
          await this.reporter.fail(err.jobId, err.failureCode, err.message);
          nextPollAt = 0;
          continue;
        }
        const verdict = this.retryRule(err, "poll", failBackoff);
        if (verdict.kind === "fatal") throw new MinerFatalError(verdict.message, verdict.exitCode);
        if (verdict.kind === "gone") {
          this.registered = false;
          await this.register();
          continue;
        }
        if (err instanceof CoordinatorError && err.kind === "rate_limited") {
          budget.learnFrom429(Date.now());
          this.log.warn(
            { event: "poll_rate_limited", pollsPerWindow: budget.perWindow, retryAfterMs: err.retryAfterMs },
            "the coordinator limited our polls; polling within the lower budget it taught",
          );
        }
        // Upstream answers a poll from a miner it forgot with 500, not 404: a heartbeat tells
        // (its 404 makes the miner register again).
        if (err instanceof CoordinatorError && err.kind === "server") this.beatSoon();
        const delay = verdict.kind === "retry" ? verdict.afterMs : failBackoff.next(null);
        this.log.warn({ event: "poll_failed", err: describeError(err), retryInMs: delay }, "poll failed");
        await sleep(delay, this.stopSignal.signal);
        continue;
      }
      if (job !== null && this.stopping) {
        // Handed over as the stop began: run it within the grace period (upstream never requeues
        // a failed job), or fail it back at once when there is no grace period.
        if (this.s.gracePeriodMs > 0) await this.takeHandout(job);
        else await this.reporter.fail(job.jobId, "shutting_down", "the miner is shutting down");
        break;
      }
      if (job === null) {
        // A coordinator that held the poll open has already waited for us: ask again at once.
        const held = Date.now() - now >= LONG_POLL_HELD_MS;
        nextPollAt = held ? 0 : now + this.s.idlePollIntervalMs;
        continue;
      }
      nextPollAt = 0; // a job came back: more may be queued, poll again while a slot is free
      await this.takeHandout(job);
    }
  }

  /**
   * Before a poll: a state directory that cannot be written, or no model to serve, means no new
   * job (each said once, re-checked every few seconds). True when a poll may go out now.
   */
  private async readyToTakeJobs(): Promise<boolean> {
    if (!this.storage.writable && !(await this.storage.check())) {
      await sleep(STORAGE_RECHECK_MS, this.stopSignal.signal);
      return false;
    }
    if (this.d.backend.listModels().length === 0) {
      if (!this.noModelSaid) {
        this.noModelSaid = true;
        this.log.warn(
          { event: "no_servable_model", backend: this.d.backend.name },
          "no model can be served, so no job is taken: add a complete NAME.gguf to --models (or an entry to --model-map); it is picked up by the next rescan",
        );
      }
      await this.waitForWake(NO_MODEL_RECHECK_MS);
      return false;
    }
    if (this.noModelSaid) {
      this.noModelSaid = false;
      this.log.info({ event: "models_available" }, "a model can be served again: taking jobs");
    }
    return true;
  }

  private noModelSaid = false;

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

  /** Wait until a job finishes, shutdown begins, or `ms` pass. */
  private async waitForWake(ms = 60_000): Promise<void> {
    this.wakeUp = new AbortController();
    await sleep(ms, AbortSignal.any([this.wakeUp.signal, this.stopSignal.signal]));
  }

  private wake(): void {
    this.wakeUp.abort();
  }

  // ---------------------------------------------------------------- running a job

  private startJob(job: Job, recovered: ClaimedJob | null): void {
    const abort = new AbortController();
    const done = this.runJob(job, recovered, abort)
      .catch((err: unknown) => this.fail(err))
      .finally(() => {
        this.inflight.delete(job.jobId);
        this.wake();
      });
    this.inflight.set(job.jobId, {
      abort,
      done,
      deadlineAt: recovered?.deadlineAt ?? Date.now() + this.s.jobTimeoutMs,
    });
  }

  private async runJob(job: Job, recovered: ClaimedJob | null, abort: AbortController): Promise<void> {
    const jobId = job.jobId;
    const claimedAt = recovered?.claimedAt ?? Date.now();
    const deadlineAt = recovered?.deadlineAt ?? claimedAt + this.s.jobTimeoutMs;
    if (!recovered) {
      try {
        await this.d.journal.record({
          jobId,
          payload: job.payload,
          constraints: job.constraints,
          claimedAt,
          deadlineAt,
        });
      } catch (err) {
        if (this.storage.noteFailure(err)) {
          // The disk's problem, not the job's: it runs, and its verdict is delivered from memory.
          this.log.warn(
            { event: "job_not_durable", jobId, err: describeError(err) },
            "the job could not be journaled; it runs anyway, but a crash now would lose it",
          );
        } else {
          // e.g. nesting too deep to serialize: no valid job looks like that.
          return this.reporter.fail(
            jobId,
            "invalid_payload",
            `the payload cannot be stored: ${(err as Error).message}`,
          );
        }
      }
    }
    const log = this.log.child({ jobId });

    const v = validatePayload(job.payload, this.s.limits);
    if (!v.ok) {
      log.warn(
        { event: "job_rejected", errorCode: v.rejection.errorCode, reason: v.rejection.message },
        "invalid job",
      );
      return this.reporter.fail(jobId, v.rejection.errorCode, v.rejection.message);
    }
    const req = v.request;
    const unmet = checkConstraints(job.constraints, await this.d.hostFacts());
    if (unmet) {
      log.warn(
        { event: "job_rejected", errorCode: unmet.errorCode, reason: unmet.message },
        "job constraints not met",
      );
      return this.reporter.fail(jobId, unmet.errorCode, unmet.message);
    }
    if (!this.d.backend.hasModel(req.model)) {
      const served = this.d.backend.listModels().map((m) => m.name);
      const msg = `model ${JSON.stringify(req.model)} is not served by this miner (it serves: ${served.join(", ") || "none"})`;
      log.warn({ event: "job_rejected", errorCode: "model_not_found", reason: msg }, "unknown model");
      return this.reporter.fail(jobId, "model_not_found", msg);
    }
    const refusal = this.d.admit ? await this.d.admit(req) : null;
    if (refusal) {
      log.warn(
        { event: "job_rejected", errorCode: refusal.errorCode, reason: refusal.message },
        "job refused by VRAM admission",
      );
      return this.reporter.fail(jobId, refusal.errorCode, refusal.message);
    }

    log.info(
      { event: "job_started", model: req.model, maxTokens: req.maxTokens, promptChars: req.prompt.length },
      "job started",
    );
    const afterJob = this.d.jobMemoryProbe ? await this.d.jobMemoryProbe().catch(() => null) : null;
    const startedAt = Date.now();
    const t0 = performance.now(); // durations from the monotonic clock: NTP steps cannot make them negative
    let result: InferenceResult;
    try {
      result = await generateWithDeadline(this.d.backend, req, abort, deadlineAt, this.s.abortGraceMs);
    } catch (err) {
      const why = abort.signal.reason as AbortWhy | undefined;
      if (err instanceof WedgedError) {
        await this.reporter.fail(jobId, "timeout", err.message);
        throw new MinerFatalError(err.message, ExitCode.wedged);
      }
      const code =
        why === "deadline"
          ? "timeout"
          : why === "shutting_down"
            ? "shutting_down"
            : err instanceof BackendError
              ? err.code
              : "inference_failed";
      const msg =
        why === "deadline"
          ? `job exceeded its deadline of ${Math.round((deadlineAt - claimedAt) / 1000)} s`
          : why === "shutting_down"
            ? "the miner is shutting down"
            : (err as Error).message;
      log.warn({ event: "job_failed", errorCode: code, reason: msg }, "job failed");
      return this.reporter.fail(jobId, code, msg);
    } finally {
      if (this.s.unloadAfterJob) await this.d.backend.unloadAll().catch(() => undefined);
      if (afterJob) await afterJob().catch(() => undefined);
    }

    const completedAt = Math.max(startedAt, Date.now());
    const durationMs = Math.round(performance.now() - t0);
    const gpu = this.d.jobMetrics ? await this.d.jobMetrics().catch(() => null) : null;
    const receipt = this.d.signReceipt({
      jobId,
      minerId: this.s.minerId,
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
    // Durable before the first submit; only then does the claim leave the journal. A disk that
    // cannot take it does not lose the result: it is submitted from memory.
    try {
      await this.d.outbox.put(completed);
      await this.d.journal.remove(jobId);
    } catch (err) {
      if (!isStorageError(err)) throw err;
      this.storage.noteFailure(err);
      log.warn(
        { event: "result_not_durable", err: describeError(err) },
        "the result could not be written to the outbox; submitting it from memory",
      );
    }
    this.emit({ type: "job_completed", durationMs, completionTokens: result.completionTokens });
    this.stats.completed++;
    this.stats.tokens += result.completionTokens;
    this.stats.promptTokens += result.promptTokens;
    this.stats.busySeconds += durationMs / 1000;
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
    await this.d
      .recordReceipt({ kind: "miner", jobId, receipt, verified: true })
      .catch((err: unknown) =>
        log.error(
          { event: "receipt_log_failed", err: describeError(err) },
          "could not append to the receipts log",
        ),
      );
    this.reporter.submit(completed);
  }

  // ---------------------------------------------------------------- reporting

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
    const deadline = Date.now() + shutdownBudgetMs(this.s);
    const left = (cap: number) => Math.max(0, Math.min(cap, deadline - Date.now()));
    this.stopping = true;
    this.stopSignal.abort(); // also aborts a poll in flight
    this.wake();
    this.log.info({ event: "shutdown", reason, inflight: this.inflight.size }, "stopping: no new jobs");

    // 0. The aborted poll settles at once; a job it still handed over is failed back.
    if (this.polling) await within(this.polling, POLL_ABORT_WAIT_MS);

    // 1. Let in-flight jobs finish within the grace period, then fail the rest as "shutting down".
    if (this.inflight.size > 0 && !wedged) {
      const all = Promise.all([...this.inflight.values()].map((r) => r.done));
      const finished = await within(all, left(this.s.gracePeriodMs));
      if (!finished) {
        for (const r of this.inflight.values()) r.abort.abort("shutting_down" satisfies AbortWhy);
        await within(all, left(this.s.abortGraceMs + 1000));
      }
    }
    // 2. Flush the outbox and failure reports for a bounded time; what is left is sent on the next start.
    await this.reporter.flush(left(this.s.flushTimeoutMs));
    this.stopHeartbeats();
    const onDisk = await this.d.outbox.depth().catch(() => -1);
    if (onDisk > 0)
      this.log.warn(
        { event: "outbox_left", count: onDisk },
        "results left in the outbox; they are submitted on the next start",
      );

    // 3. Deregister (best effort) and release the backend.
    if (this.registered) {
      await this.d.client
        .deregister(Math.max(1, left(DEREGISTER_TIMEOUT_MS)))
        .catch((err: unknown) =>
          this.log.warn({ event: "deregister_failed", err: describeError(err) }, "deregister failed"),
        );
    }
    // A backend that wedged during the grace period holds its locks: do not wait on it for ever.
    if (!wedged) await within(this.d.backend.close(), left(BACKEND_CLOSE_TIMEOUT_MS));
    await within(
      this.d.client.close().catch(() => undefined),
      1000,
    );
    const exit: MinerExit = this.fatal
      ? { code: this.fatal.exitCode, reason: this.fatal.message }
      : { code: ExitCode.ok, reason };
    this.log.info({ event: "stopped", exitCode: exit.code, stats: this.snapshot() }, "miner stopped");
    this.exitResolve?.(exit);
    return exit;
  }
}

function pollErrorResult(err: unknown): PollResult {
  if (err instanceof UnusableJobError) return "unusable";
  if (err instanceof CoordinatorError && err.kind === "rate_limited") return "rate_limited";
  return "error";
}
