// When heartbeats go out: every interval, and out of turn on request (after an acknowledged
// failure, on a poll error), coalesced and spaced so a burst of requests is one heartbeat. A
// failed heartbeat comes back when the retry rule says, between the spacing and the interval. One at a
// time: a request while one is in flight sends another right after it. The spacing is measured on
// the monotonic clock: a wall-clock step back must not push the next beat hours away.
import { type Clock, monotonicNow } from "../clock.js";
import { EARLY_BEAT_SPACING_MS } from "./types.js";

export class HeartbeatSchedule {
  private timer: NodeJS.Timeout | null = null;
  private beating = false;
  private again = false;
  private lastAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly intervalMs: number,
    /** Send one heartbeat; never rejects. Resolves with a retry delay when it failed, else null. */
    private readonly send: () => Promise<number | null>,
    private readonly clock: Clock = monotonicNow,
  ) {}

  start(): void {
    this.arm(0);
  }

  /** A heartbeat out of turn, as soon as the spacing allows. */
  soon(): void {
    if (this.timer === null) return;
    if (this.beating) {
      this.again = true;
      return;
    }
    this.arm(Math.min(this.intervalMs, Math.max(0, this.lastAt + EARLY_BEAT_SPACING_MS - this.clock())));
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private arm(ms: number): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.beat(), ms);
    this.timer.unref();
  }

  private async beat(): Promise<void> {
    if (this.beating) {
      this.again = true;
      return;
    }
    this.beating = true;
    this.lastAt = this.clock();
    let retryInMs: number | null = null;
    try {
      retryInMs = await this.send();
    } finally {
      this.beating = false;
      if (this.timer !== null) {
        const again = this.again;
        this.again = false;
        const retry = retryInMs === null ? this.intervalMs : Math.max(EARLY_BEAT_SPACING_MS, retryInMs);
        this.arm(again ? EARLY_BEAT_SPACING_MS : Math.min(this.intervalMs, retry));
      }
    }
  }
}
