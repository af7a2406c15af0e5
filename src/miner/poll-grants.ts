// A PollBudget in this process: requests wait in arrival order and are granted from one
// PollWindow as it allows, on a timer set for the next moment one may go. The whole budget of a
// lone `run`; in a fleet the supervisor holds one for the host and grants it to its workers over
// IPC (src/fleet/poll-share.ts). A 429 holds every request off; one log line per episode.
import { type Clock, monotonicNow } from "../clock.js";
import type { Logger } from "../log.js";
import { type PollBudget, type PollRequest, PollWindow, type PollWindowSettings } from "./poll-budget.js";

interface Pending {
  req: PollRequest;
  resolve(n: number): void;
  onAbort(): void;
}

export class PollGrants implements PollBudget {
  readonly window: PollWindow;
  private readonly queue: Pending[] = [];
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Number.POSITIVE_INFINITY;

  constructor(
    settings: PollWindowSettings,
    private readonly log: Logger,
    private readonly clock: Clock = monotonicNow,
  ) {
    this.window = new PollWindow(settings);
  }

  acquire(req: PollRequest): Promise<number> {
    if (req.signal.aborted) return Promise.resolve(0);
    return new Promise<number>((resolve) => {
      const p: Pending = {
        req,
        resolve,
        onAbort: () => {
          this.drop(p);
          resolve(0);
        },
      };
      req.signal.addEventListener("abort", p.onAbort, { once: true });
      this.queue.push(p);
      this.pump();
    });
  }

  rateLimited(retryAfterMs: number | null, who?: string): void {
    const now = this.clock();
    const { holdMs, fresh } = this.window.note429(now, retryAfterMs);
    if (fresh) {
      this.log.warn(
        {
          event: "poll_rate_limited",
          holdMs: Math.round(holdMs),
          retryAfterMs,
          pollsPerWindow: this.window.perWindow,
          ...(who ? { worker: who } : {}),
        },
        retryAfterMs !== null
          ? "the coordinator limited our polls: every poll waits for its Retry-After"
          : "the coordinator limited our polls: every poll waits until the window has room",
      );
    }
    this.pump();
  }

  /** Requests waiting for a grant. */
  get waiting(): number {
    return this.queue.length;
  }

  /** Grant what may go now, in arrival order (a backlog request may pass an idle one held to the spacing). */
  private pump(): void {
    const now = this.clock();
    let next = Number.POSITIVE_INFINITY;
    for (let i = 0; i < this.queue.length; ) {
      const p = this.queue[i]!;
      const n = this.window.take(now, Math.max(1, p.req.want), p.req.backlog);
      if (n > 0) {
        this.queue.splice(i, 1);
        p.req.signal.removeEventListener("abort", p.onAbort);
        p.resolve(n);
        continue;
      }
      const wait = this.window.waitMs(now, p.req.backlog);
      p.req.onWait?.(wait);
      next = Math.min(next, now + wait);
      i++;
    }
    this.arm(next);
  }

  private arm(at: number): void {
    if (at === this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = at;
    if (!Number.isFinite(at)) return;
    // A timer may fire a little early by this clock: pump then looks again and re-arms.
    this.timer = setTimeout(
      () => {
        this.timer = null;
        this.timerAt = Number.POSITIVE_INFINITY;
        this.pump();
      },
      Math.max(1, Math.ceil(at - this.clock())),
    );
  }

  private drop(p: Pending): void {
    const i = this.queue.indexOf(p);
    if (i >= 0) this.queue.splice(i, 1);
    this.pump();
  }
}
