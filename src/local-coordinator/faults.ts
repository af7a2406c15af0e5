// Seeded fault injection for the local coordinator: the same seed gives the same faults, so a
// flaky-network test is reproducible.
import { seededRandom } from "../prng.js";

export type FaultKind = "serverError" | "reset" | "slow" | "dropAfterCommit";

export interface FaultOptions {
  /** Probability (0..1) of answering 500 without processing. */
  serverErrorRate?: number;
  /** Probability of destroying the socket without processing or answering. */
  resetRate?: number;
  /** Probability of delaying the answer by slowMs. */
  slowRate?: number;
  slowMs?: number;
  /** Probability of processing a submission, then destroying the socket before answering. */
  dropAfterCommitRate?: number;
  seed?: number;
  /** Only these routes (e.g. "poll", "result", "complete") get faults; all when absent. */
  routes?: string[];
}

export interface FaultPlan {
  reset: boolean;
  serverError: boolean;
  slowMs: number;
  dropAfterCommit: boolean;
}

const NONE: FaultPlan = { reset: false, serverError: false, slowMs: 0, dropAfterCommit: false };

export class FaultInjector {
  private readonly rand: () => number;
  readonly counts: Record<FaultKind, number> = { serverError: 0, reset: 0, slow: 0, dropAfterCommit: 0 };

  constructor(private readonly opts: FaultOptions | undefined) {
    this.rand = seededRandom(opts?.seed ?? 1);
  }

  /** Decide the faults for one request. Every rate draws once, so plans stay reproducible. */
  plan(route: string, mutates: boolean): FaultPlan {
    const o = this.opts;
    if (!o || (o.routes && !o.routes.includes(route))) return NONE;
    const roll = (rate: number | undefined) => (rate ?? 0) > 0 && this.rand() < (rate ?? 0);
    const reset = roll(o.resetRate);
    const serverError = roll(o.serverErrorRate);
    const slow = roll(o.slowRate);
    const drop = mutates && roll(o.dropAfterCommitRate);
    return { reset, serverError, slowMs: slow ? (o.slowMs ?? 1000) : 0, dropAfterCommit: drop };
  }

  count(kind: FaultKind): void {
    this.counts[kind]++;
  }
}
