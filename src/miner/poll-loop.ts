// The poll loop: while a slot is free and a job can be taken, poll within the coordinator's
// budget, hand each job over to the miner, and decide from the retry rule what a failed poll
// means. Moved out of loop.ts (the Miner) so each stays one job and under 450 lines.
import { backoffFor, sleep } from "../backoff.js";
import { CoordinatorError } from "../coordinator/errors.js";
import type { Job } from "../coordinator/types.js";
import { describeError } from "../describe-error.js";
import type { Logger } from "../log.js";
import type { MinerEvent } from "../ops/events.js";
import type { LoopWatch } from "./loop-watch.js";
import type { PollBudget } from "./poll-budget.js";
import { PollGrants } from "./poll-grants.js";
import { pollOutcome, pollRound, pollsWanted } from "./poll-round.js";
import type { Registration } from "./registration.js";
import type { Reporter } from "./reporter.js";
import type { RetryRule } from "./retry.js";
import type { StateStorage } from "./state-storage.js";
import { type MinerDeps, MinerFatalError, type MinerSettings, NO_MODEL_RECHECK_MS } from "./types.js";

/** What the poll loop needs from the miner. */
export interface PollLoopContext {
  d: MinerDeps;
  s: MinerSettings;
  log: Logger;
  watch: LoopWatch;
  reporter: Reporter;
  storage: StateStorage;
  membership: Registration;
  retryRule: RetryRule;
  /** Local to this process, or the host's (granted by the fleet supervisor). */
  budget: PollBudget;
  /** Aborted when the miner stops: every wait ends at once. */
  signal: AbortSignal;
  isStopping(): boolean;
  /** Slots free now (concurrency minus jobs in hand). */
  freeSlots(): number;
  /** Until a job finishes, the stop begins, or `ms` pass. */
  waitForWake(ms?: number): Promise<void>;
  /** A job the coordinator handed over: the miner runs it (or says why not). */
  takeHandout(job: Job): Promise<void>;
  emit(e: MinerEvent): void;
  /** A heartbeat out of turn. */
  beatSoon(): void;
  /** After a failed poll, before the next: may settle with the coordinator (orphan-sweep.ts). */
  afterPollError?(err: unknown): Promise<void>;
}

/** A lone miner's budget: the settings' limit (its margin already taken), spaced evenly. */
export function localPollBudget(s: MinerSettings, log: Logger): PollBudget {
  return new PollGrants(
    { perWindow: s.pollsPerWindow, windowMs: s.pollWindowMs, spacingMs: s.idlePollIntervalMs },
    log,
  );
}

export class PollLoop {
  private noModelSaid = false;

  constructor(private readonly c: PollLoopContext) {}

  async run(warm: Promise<void> = Promise.resolve()): Promise<void> {
    const { c } = this;
    const { s, watch } = c;
    watch.parked(); // warm-up has its own deadlines
    await Promise.race([warm, sleep(2 ** 31 - 1, c.signal)]);
    const budget = c.budget;
    const failBackoff = backoffFor("poll");
    /** The last round of polls brought a job: more are likely queued. */
    let backlog = false;
    while (!c.isStopping()) {
      // A busy worker asks for nothing: the host's polls go to those with a free slot.
      if (c.freeSlots() <= 0) {
        watch.parked(); // every job has its own deadline
        await c.waitForWake();
        continue;
      }
      watch.moved();
      if (!(await this.readyToTakeJobs())) continue;
      // The budget spaces idle polls (the host's share) and holds them after a 429. A wait decided
      // in another process (the supervisor's) has no deadline here: the supervisor's own health covers it.
      const granted = await budget.acquire({
        signal: c.signal,
        want: pollsWanted(c.d.client.traits, backlog, c.freeSlots()),
        backlog,
        onWait: (ms) => (ms === null ? watch.parked() : watch.moved(ms)),
      });
      if (granted === 0 || c.isStopping()) continue;
      watch.moved(s.longPollSeconds * 1000);
      const round = await pollRound(c.d.client, {
        longPollSeconds: s.longPollSeconds,
        polls: granted,
        backlog,
        signal: c.signal,
      });
      watch.polled(round.error);
      if (!c.isStopping()) {
        for (const o of round.outcomes) c.emit({ type: "poll", result: pollOutcome(o) });
        for (const err of round.unusable) {
          // Handed over, so ours: fail it back (the slot is freed) and go on mining.
          c.log.warn(
            { event: "job_rejected", jobId: err.jobId, errorCode: err.failureCode, reason: err.message },
            "the coordinator handed over a job that cannot be used; failing it back",
          );
          await c.reporter.fail(err.jobId, err.failureCode, err.message);
        }
      }
      const { jobs, error } = round;
      if (c.isStopping()) {
        // Handed over as the stop began: run them within the grace period (upstream never
        // requeues a failed job), or fail them back at once when there is no grace period.
        for (const job of jobs) {
          if (s.gracePeriodMs > 0) await c.takeHandout(job);
          else await c.reporter.fail(job.jobId, "shutting_down", "the miner is shutting down");
        }
        break;
      }
      for (const job of jobs) await c.takeHandout(job);
      backlog = jobs.length > 0 || round.unusable.length > 0;
      const limited = round.outcomes.find(
        (o) =>
          o.status === "rejected" && o.reason instanceof CoordinatorError && o.reason.kind === "rate_limited",
      );
      if (limited) {
        // The budget holds every poll (the host's, in a fleet) for as long as it must and logs
        // once: the next acquire waits. Not a failure: no backoff, no poll_failed line.
        budget.rateLimited((limited as PromiseRejectedResult).reason.retryAfterMs);
        if (error instanceof CoordinatorError && error.kind === "rate_limited") continue;
      }
      if (error !== undefined) {
        const verdict = c.retryRule(error, "poll", failBackoff);
        if (verdict.kind === "fatal") throw new MinerFatalError(verdict.message, verdict.exitCode);
        if (verdict.kind === "gone") {
          watch.parked(); // registration retries on its own schedule
          await c.membership.reregister();
          continue;
        }
        // The rule says when a failed poll may mean the coordinator forgot us (upstream answers
        // with 500, not 404): a heartbeat tells (its 404 makes the miner register again).
        if (verdict.kind === "retry" && verdict.checkMembership) c.beatSoon();
        await c.afterPollError?.(error);
        const delay = verdict.kind === "retry" ? verdict.afterMs : failBackoff.next(null);
        c.log.warn({ event: "poll_failed", err: describeError(error), retryInMs: delay }, "poll failed");
        watch.moved(delay);
        await sleep(delay, c.signal);
        continue;
      }
      // The next idle poll waits for the budget's spacing, counted from this grant: a poll the
      // coordinator held open (long-poll) has already waited it out, so the next goes at once.
      failBackoff.reset();
    }
  }

  /**
   * Before a poll: a state directory that cannot be written, or no model to serve, means no new
   * job (each said once, re-checked every few seconds). True when a poll may go out now.
   */
  private async readyToTakeJobs(): Promise<boolean> {
    const { c } = this;
    if (!c.storage.writable && !(await c.storage.check())) {
      c.watch.moved(c.storage.recheckMs);
      await sleep(c.storage.recheckMs, c.signal);
      return false;
    }
    if (c.d.backend.listModels().length === 0) {
      if (!this.noModelSaid) {
        this.noModelSaid = true;
        c.log.warn(
          { event: "no_servable_model", backend: c.d.backend.name },
          "no model can be served, so no job is taken: add a complete NAME.gguf to --models (or an entry to --model-map); it is picked up by the next rescan",
        );
      }
      c.watch.moved(NO_MODEL_RECHECK_MS);
      await c.waitForWake(NO_MODEL_RECHECK_MS);
      return false;
    }
    if (this.noModelSaid) {
      this.noModelSaid = false;
      c.log.info({ event: "models_available" }, "a model can be served again: taking jobs");
    }
    return true;
  }
}
