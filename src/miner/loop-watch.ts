// What the poll loop says about its own progress, for /healthz and /readyz (health.ts): before
// each wait it names how long it will be, so a long Retry-After or an idle spacing is not "stuck"
// and a loop that never comes back is; whether polls are being answered; whether warm-up runs.
// It holds the health limits in force. Monotonic clock only.
import { type Clock, monotonicNow } from "../clock.js";
import { CoordinatorError } from "../coordinator/errors.js";
import { describeError } from "../describe-error.js";
import { type HealthFacts, minerHealth } from "./health.js";
import { DEFAULT_HEALTH_LIMITS, type HealthLimits, resolveHealthLimits } from "./health-limits.js";
import type { MinerHealth } from "./types.js";

type OwnFacts = "pollDueBy" | "pollMovedAt" | "warmUp" | "notPolling";

export class LoopWatch {
  readonly limits: HealthLimits;
  /** Why the limits given (AITBC_HEALTH_LIMITS) cannot be used: run() stops with exit 2. */
  readonly badLimits: string | null = null;
  private dueBy: number | null = null;
  private movedAt: number;
  private warmUp: { startedAt: number } | null = null;
  private notPolling = "not polling yet: starting";

  constructor(
    limits: Partial<HealthLimits> | undefined,
    private readonly clock: Clock = monotonicNow,
  ) {
    let resolved = DEFAULT_HEALTH_LIMITS;
    try {
      resolved = resolveHealthLimits(limits);
    } catch (err) {
      this.badLimits = (err as Error).message;
    }
    this.limits = resolved;
    this.movedAt = clock();
  }

  /** Live and ready, from the loop's facts and these. */
  health(f: Omit<HealthFacts, OwnFacts>, abortGraceMs: number, now = this.clock()): MinerHealth {
    return minerHealth({ ...f, ...this.facts() }, { ...this.limits, abortGraceMs }, now);
  }

  /** The loop moved and will move again within `waitMs` (plus the stall limit). */
  moved(waitMs = 0): void {
    this.movedAt = this.clock();
    this.dueBy = this.movedAt + Math.max(0, waitMs) + this.limits.pollStallMs;
  }

  /** The loop waits on work that has its own deadline (registration, warm-up, full slots). */
  parked(): void {
    this.movedAt = this.clock();
    this.dueBy = null;
  }

  warmUpStarted(): void {
    this.warmUp = { startedAt: this.clock() };
    this.notPolling = "not polling yet: loading the models to serve";
  }

  warmUpEnded(): void {
    this.warmUp = null;
    this.notPolling = "not polling yet";
  }

  /** A poll round ended (the loop moved): answered (a job, none, a rate limit), or failed with `error`. */
  polled(error: unknown): void {
    this.moved();
    const answered = error instanceof CoordinatorError && error.kind === "rate_limited";
    if (error === undefined || answered) this.notPolling = "";
    else this.notPolling = `not polling: the last poll failed (${String(describeError(error)["message"])})`;
  }

  facts(): Pick<HealthFacts, OwnFacts> {
    return {
      pollDueBy: this.dueBy,
      pollMovedAt: this.movedAt,
      warmUp: this.warmUp,
      notPolling: this.notPolling === "" ? null : this.notPolling,
    };
  }
}
