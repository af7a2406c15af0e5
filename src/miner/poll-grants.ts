// A PollBudget in this process: requests wait in arrival order and are granted from one
// PollWindow as it allows, on a timer set for the next moment one may go. The whole budget of a
// lone `run`; in a fleet the supervisor holds one for the host and grants it to its workers over
// IPC (src/fleet/poll-share.ts). A 429 holds every request off; one log line per episode.
// Grants lean to the worker the coordinator last handed a job to: upstream gives a queued job
// only to the best-reputation miner with a free slot, so a poll from another of our workers
// comes back empty while that one is idle. The others still get every FAVOUR_RUN+1-th grant, and
// a job one of them brings makes it the favourite, so a guess gone wrong (or a coordinator
// without that rule) costs little.
import { type Clock, monotonicNow } from "../clock.js";
import type { Logger } from "../log.js";
import { type PollBudget, type PollRequest, PollWindow, type PollWindowSettings } from "./poll-budget.js";

/** Grants in a row the favoured worker may take while others wait. */
export const FAVOUR_RUN = 5;

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
  /** The worker whose poll last brought a job, and its grants in a row while others waited. */
  private favourite: string | null = null;
  private streak = 0;

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

  /** A poll of `who` brought a job: the coordinator picks it; lean the next grants to it. */
  won(who: string): void {
    if (this.favourite !== who) this.streak = 0;
    this.favourite = who;
  }

  /** Requests waiting for a grant. */
  get waiting(): number {
    return this.queue.length;
  }

  /** Grant what may go now, in arrival order (a backlog request may pass an idle one held to the spacing). */
  private pump(): void {
    const now = this.clock();
    let next = Number.POSITIVE_INFINITY;
    for (const p of this.order()) {
      const n = this.window.take(now, Math.max(1, p.req.want), p.req.backlog);
      if (n > 0) {
        this.queue.splice(this.queue.indexOf(p), 1);
        p.req.signal.removeEventListener("abort", p.onAbort);
        this.granted(p.req.who);
        p.resolve(n);
        continue;
      }
      const wait = this.window.waitMs(now, p.req.backlog);
      p.req.onWait?.(wait);
      next = Math.min(next, now + wait);
    }
    this.arm(next);
  }

  /** Arrival order, the favoured worker's request first unless it has had its run. */
  private order(): Pending[] {
    const fav = this.queue.find((p) => p.req.who !== undefined && p.req.who === this.favourite);
    if (!fav) return [...this.queue];
    const rest = this.queue.filter((p) => p !== fav);
    return rest.length > 0 && this.streak >= FAVOUR_RUN ? [...rest, fav] : [fav, ...rest];
  }

  private granted(who: string | undefined): void {
    const othersWait = this.queue.some((p) => p.req.who !== this.favourite);
    if (who !== undefined && who === this.favourite) this.streak = othersWait ? this.streak + 1 : 0;
    else this.streak = 0;
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
