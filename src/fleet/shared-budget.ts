// A worker's poll budget in a fleet: the host's, held by the supervisor (poll-share.ts). Each
// acquire asks over IPC and waits for the grant; a 429 is reported so the whole host holds off.
// Without a supervisor to answer (it is gone) a request waits until the stop aborts it: the
// worker stops anyway when its supervisor goes (worker-link.ts).
import type { PollBudget, PollRequest } from "../miner/poll-budget.js";
import type { PollGrantMessage, PollMessage } from "./ipc.js";

export class SharedPollBudget implements PollBudget {
  private nextId = 1;
  private readonly pending = new Map<number, (n: number) => void>();

  constructor(private readonly send: (m: PollMessage) => void) {}

  acquire(req: PollRequest): Promise<number> {
    if (req.signal.aborted) return Promise.resolve(0);
    const id = this.nextId++;
    return new Promise<number>((resolve) => {
      const onAbort = () => {
        this.pending.delete(id);
        this.send({ t: "poll_cancel", id });
        resolve(0);
      };
      this.pending.set(id, (n) => {
        this.pending.delete(id);
        req.signal.removeEventListener("abort", onAbort);
        resolve(Math.min(n, req.want));
      });
      req.signal.addEventListener("abort", onAbort, { once: true });
      // How long is the supervisor's to decide: no deadline of our own while waiting.
      req.onWait?.(null);
      this.send({ t: "poll_ask", id, want: Math.max(1, req.want), backlog: req.backlog });
    });
  }

  rateLimited(retryAfterMs: number | null): void {
    this.send({ t: "poll_429", retryAfterMs });
  }

  /** A grant from the supervisor (one for a request no longer waiting is dropped). */
  granted(m: PollGrantMessage): void {
    this.pending.get(m.id)?.(m.n);
  }
}
