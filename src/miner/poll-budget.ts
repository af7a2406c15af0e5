// The coordinator's poll budget. Upstream allows 100 polls a minute per client IP and route,
// counted by ARRIVAL in a sliding 60 s window, so every worker of a host shares one budget, and a
// budget counted by send time must keep a margin (a poll sent late in one window can arrive early
// in the next one's count). Here: a sliding log of the last N grants (no window ever holds more
// than N), idle polls spread evenly (one per window/N, so pickup stays sub-second however many
// workers share it), backlog polls free to burst within the log, and a 429 holding every poll off
// for its Retry-After or, without one, just until the log falls under the window. A dialect with
// no known limit starts unbounded and learns one from its 429s. Times are a monotonic clock
// (src/clock.ts): with wall time a step back would leave every grant "in the future".
// (docs/operations.md#the-hosts-poll-budget)

/** What the poll loop spends: local to one process, or the host's, granted by the supervisor. */
export interface PollBudget {
  /**
   * Wait until polls may go; resolves with how many are granted (at least 1, at most `want`), each
   * counted as sent; 0 when the signal aborted the wait (nothing granted).
   */
  acquire(req: PollRequest): Promise<number>;
  /** The coordinator answered a poll with 429 (`retryAfterMs`: its Retry-After, if any). */
  rateLimited(retryAfterMs: number | null): void;
}

export interface PollRequest {
  signal: AbortSignal;
  /** Polls wanted at once (a backlog round's free slots; 1 when idle). */
  want: number;
  /** A backlog round (the last poll brought a job): not held to the idle spacing. */
  backlog: boolean;
  /** Told how long the wait will be before it begins (null: not known here, another process decides). */
  onWait?(ms: number | null): void;
  /** Which worker asks (a fleet's worker key): grants lean to the one the coordinator hands jobs to. */
  who?: string;
}

/** The share of a published limit the miner spends: the rest absorbs send-vs-arrival skew. */
export const POLL_MARGIN = 0.1;
/** Without Retry-After, wait this much past the log's own answer: arrival lags our send. */
export const ARRIVAL_SLACK_MS = 250;

/** The polls per window to spend against a published limit: ~10 % under it, at least 1. */
export function hostPollLimit(published: number): number {
  if (!Number.isFinite(published)) return published;
  return Math.max(1, Math.floor(published * (1 - POLL_MARGIN)));
}

const UNBOUNDED_HISTORY = 10_000;
/** The lowest limit a 429 can teach (per window). */
const MIN_LEARNED_LIMIT = 10;

export interface PollWindowSettings {
  /** Grants allowed in any window (Infinity: none known). */
  perWindow: number;
  windowMs: number;
  /** Least time between two idle grants (the budget spread evenly: windowMs / perWindow). */
  spacingMs: number;
}

/** The bookkeeping of one budget, on a clock the caller passes in. No timers, no I/O. */
export class PollWindow {
  /** Grant times still inside the window, oldest first (at most `limit`). */
  private readonly sent: number[] = [];
  private limit: number;
  private lastGrantAt = Number.NEGATIVE_INFINITY;
  /** No grant before this (a 429's hold). */
  private holdUntil = Number.NEGATIVE_INFINITY;

  constructor(readonly settings: PollWindowSettings) {
    this.limit = settings.perWindow;
  }

  /** The grants allowed per window now (Infinity when no limit is known). */
  get perWindow(): number {
    return this.limit;
  }

  /** Milliseconds until a grant may go (0: now). */
  waitMs(now: number, backlog: boolean): number {
    let at = Math.max(this.holdUntil, this.roomAt(now));
    if (!backlog) at = Math.max(at, this.lastGrantAt + this.settings.spacingMs);
    return Math.max(0, at - now);
  }

  /** When the log has room for one more grant (the limit alone: no hold, no spacing). */
  private roomAt(now: number): number {
    this.expire(now);
    if (this.sent.length < this.limit) return now;
    return this.sent[this.sent.length - this.limit]! + this.settings.windowMs;
  }

  /** Grant up to `want` now (0 when none may go): the first as asked, the rest as a backlog burst. */
  take(now: number, want: number, backlog: boolean): number {
    if (this.waitMs(now, backlog) > 0) return 0;
    let n = 0;
    do {
      this.spend(now);
      n++;
    } while (n < want && this.waitMs(now, true) === 0);
    return n;
  }

  /**
   * A 429: hold every grant off for its Retry-After or, without one, until the oldest poll of the
   * window leaves it (plus the arrival slack): just enough to fall under the coordinator's window,
   * never a blind minute. Learns a lower limit (with the margin) on evidence only: a 429 after a
   * handful of polls says more about the server, a shared IP, than about a limit. Returns the
   * hold and whether it begins an episode (no hold was in force): one log line per episode.
   */
  note429(now: number, retryAfterMs: number | null): { holdMs: number; fresh: boolean } {
    this.expire(now);
    const inWindow = this.sent.length;
    // It took fewer than we sent: spend under that, with the same margin as under a published limit.
    if (inWindow > MIN_LEARNED_LIMIT) this.limit = Math.min(this.limit, hostPollLimit(inWindow - 1));
    const fresh = this.holdUntil <= now;
    let holdMs: number;
    if (retryAfterMs !== null && retryAfterMs > 0) holdMs = retryAfterMs;
    else if (inWindow > 0) {
      // The coordinator's window is full: room comes when our oldest poll in it leaves (or, under
      // a limit just learned, when enough have left for the log to allow one).
      const oldestLeaves = this.sent[0]! + this.settings.windowMs;
      holdMs = Math.max(oldestLeaves, this.roomAt(now)) - now + ARRIVAL_SLACK_MS;
    } else holdMs = this.settings.spacingMs + ARRIVAL_SLACK_MS;
    this.holdUntil = Math.max(this.holdUntil, now + holdMs);
    return { holdMs: this.holdUntil - now, fresh };
  }

  private spend(now: number): void {
    this.sent.push(now);
    this.lastGrantAt = now;
    // Unbounded: keep enough history to learn a limit from a 429, never an ever-growing log.
    if (this.sent.length > Math.min(this.limit, UNBOUNDED_HISTORY)) this.sent.shift();
  }

  private expire(now: number): void {
    while (this.sent.length > 0 && this.sent[0]! <= now - this.settings.windowMs) this.sent.shift();
  }
}
