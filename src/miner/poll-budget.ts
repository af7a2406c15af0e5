// The coordinator's poll budget: at most N polls in any window of W ms (the reference coordinator
// allows 100 a minute per client). It is the count per window that is limited, not the spacing,
// so polls may burst (a backlog drains at the speed of the network) as long as no window ever
// holds more than N: a sliding log of the last N send times says when the next poll may go.
// A dialect with no known limit starts unbounded and learns one from its 429s. Times are the
// caller's monotonic clock (src/clock.ts): with wall time, a step back would leave every send
// "in the future" and the window full for hours.

const UNBOUNDED_HISTORY = 10_000;
/** The lowest limit a 429 can teach (per window). */
const MIN_LEARNED_LIMIT = 10;

export class PollBudget {
  /** Send times of the polls still inside the window, oldest first (at most `limit`). */
  private readonly sent: number[] = [];

  constructor(
    private limit: number,
    private readonly windowMs: number,
  ) {}

  /** The polls allowed per window now (Infinity when no limit is known). */
  get perWindow(): number {
    return this.limit;
  }

  /** Milliseconds until a poll may be sent (0: now). */
  waitMs(now: number): number {
    this.expire(now);
    if (this.sent.length < this.limit) return 0;
    return Math.max(0, this.sent[0]! + this.windowMs - now);
  }

  /** Record a poll sent at `now`. */
  spend(now: number): void {
    this.expire(now);
    this.sent.push(now);
    // Unbounded: keep enough history to learn a limit from a 429, never an ever-growing log.
    if (this.sent.length > Math.min(this.limit, UNBOUNDED_HISTORY)) this.sent.shift();
  }

  /**
   * The coordinator answered 429: its limit is below what we sent in this window. Settle just
   * under that count, but only on evidence: a 429 after a handful of polls says more about the
   * server (a shared IP, a burst from elsewhere) than about a limit, and Retry-After covers it.
   */
  learnFrom429(now: number, sentInWindow = this.countInWindow(now)): void {
    if (sentInWindow <= MIN_LEARNED_LIMIT) return;
    const next = Math.min(this.limit, sentInWindow - 1);
    if (next < this.limit) this.limit = next;
  }

  private countInWindow(now: number): number {
    this.expire(now);
    return this.sent.length;
  }

  private expire(now: number): void {
    while (this.sent.length > 0 && this.sent[0]! <= now - this.windowMs) this.sent.shift();
  }
}
