// Seeded fault injection for the local coordinator: the same seed gives the same faults, so a
// flaky-network test is reproducible.
import { z } from "zod";
import { seededRandom } from "../prng.js";

export type FaultKind = "serverError" | "reset" | "slow" | "dropAfterCommit" | "serverErrorAfterCommit";

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
  /**
   * Probability of processing a request that changes state (a submission, a claim, a poll that
   * hands a job over), then answering 500: the change stands, as when upstream stores a hand-over
   * and then cannot serialise its answer.
   */
  serverErrorAfterCommitRate?: number;
  /** At most this many faults in all; none after (default: no limit). */
  limit?: number;
  seed?: number;
  /** Only these routes (e.g. "poll", "result", "complete") get faults; all when absent. */
  routes?: string[];
}

const rate = z.number().min(0).max(1);

/** FaultOptions as given on a command line or in the environment (main.ts): unknown keys refused. */
export const faultOptionsSchema = z.strictObject({
  serverErrorRate: rate.optional(),
  resetRate: rate.optional(),
  slowRate: rate.optional(),
  slowMs: z.number().int().min(0).max(600_000).optional(),
  dropAfterCommitRate: rate.optional(),
  serverErrorAfterCommitRate: rate.optional(),
  limit: z.number().int().min(0).optional(),
  seed: z.number().int().optional(),
  routes: z.array(z.string().max(64)).max(64).optional(),
});

export interface FaultPlan {
  reset: boolean;
  serverError: boolean;
  slowMs: number;
  dropAfterCommit: boolean;
  /** Answer 500 when the handler committed a change (see serverErrorAfterCommitRate). */
  serverErrorAfterCommit: boolean;
}

const NONE: FaultPlan = {
  reset: false,
  serverError: false,
  slowMs: 0,
  dropAfterCommit: false,
  serverErrorAfterCommit: false,
};

export class FaultInjector {
  private readonly rand: () => number;
  readonly counts: Record<FaultKind, number> = {
    serverError: 0,
    reset: 0,
    slow: 0,
    dropAfterCommit: 0,
    serverErrorAfterCommit: 0,
  };
  private total = 0;

  constructor(private readonly opts: FaultOptions | undefined) {
    this.rand = seededRandom(opts?.seed ?? 1);
  }

  /** Decide the faults for one request. Every rate draws once, so plans stay reproducible. */
  plan(route: string, mutates: boolean): FaultPlan {
    const o = this.opts;
    if (!o || (o.routes && !o.routes.includes(route))) return NONE;
    if (o.limit !== undefined && this.total >= o.limit) return NONE;
    const roll = (rate: number | undefined) => (rate ?? 0) > 0 && this.rand() < (rate ?? 0);
    const reset = roll(o.resetRate);
    const serverError = roll(o.serverErrorRate);
    const slow = roll(o.slowRate);
    const drop = mutates && roll(o.dropAfterCommitRate);
    // Drawn only when its rate is set, so existing seeds give the same plans as before.
    const afterCommit = roll(o.serverErrorAfterCommitRate);
    return {
      reset,
      serverError,
      slowMs: slow ? (o.slowMs ?? 1000) : 0,
      dropAfterCommit: drop,
      serverErrorAfterCommit: afterCommit,
    };
  }

  count(kind: FaultKind): void {
    this.counts[kind]++;
    this.total++;
  }
}
