// The supervisor's side of the host's poll budget. The coordinator limits polls per client IP,
// so the workers of one host share one budget: the supervisor holds it (a PollGrants on the
// host's window less the margin) and grants polls to the workers that ask, one at a time, evenly
// spaced and in turn; a worker with no free slot asks for nothing. A 429 any worker sees holds
// every worker off, and is logged once. (docs/operations.md#the-hosts-poll-budget)
import type { Logger } from "../log.js";
import type { PollWindowSettings } from "../miner/poll-budget.js";
import { PollGrants } from "../miner/poll-grants.js";
import type { PollGrantMessage, PollMessage } from "./ipc.js";

export class PollShare {
  private readonly grants: PollGrants;
  /** Requests waiting for a grant, per worker: aborting one drops it from the queue. */
  private readonly waiting = new Map<string, Map<number, AbortController>>();

  constructor(settings: PollWindowSettings, log: Logger) {
    this.grants = new PollGrants(settings, log);
  }

  /** A worker's poll message; `send` answers that worker (a grant). */
  handle(worker: string, m: PollMessage, send: (g: PollGrantMessage) => void): void {
    const mine = this.waiting.get(worker) ?? new Map<number, AbortController>();
    this.waiting.set(worker, mine);
    switch (m.t) {
      case "poll_ask": {
        mine.get(m.id)?.abort(); // an id asked again replaces its request
        const ac = new AbortController();
        mine.set(m.id, ac);
        void this.grants
          .acquire({ signal: ac.signal, want: m.want, backlog: m.backlog, who: worker })
          .then((n) => {
            if (mine.get(m.id) === ac) mine.delete(m.id);
            // A grant that crosses the worker's cancel is spent unused: counted, so never over.
            if (n > 0) send({ t: "poll_grant", id: m.id, n });
          });
        return;
      }
      case "poll_cancel":
        mine.get(m.id)?.abort();
        mine.delete(m.id);
        return;
      case "poll_429":
        this.grants.rateLimited(m.retryAfterMs, worker);
        return;
    }
  }

  /** A poll of `worker` brought a job (its poll event): grants lean to it (see PollGrants). */
  won(worker: string): void {
    this.grants.won(worker);
  }

  /** The worker exited: its requests leave the queue. */
  forget(worker: string): void {
    for (const ac of this.waiting.get(worker)?.values() ?? []) ac.abort();
    this.waiting.delete(worker);
  }

  /** Requests waiting across the host (tests, diagnostics). */
  get queued(): number {
    return this.grants.waiting;
  }
}
