// Nothing orphaned (docs/operations.md#cancellation-and-orphans): a poll that failed on the
// coordinator's side may still have handed a job over (upstream stores the hand-over, then fails to
// serialise a payload with a lone surrogate: 500, and the job stays RUNNING on this miner for
// good). After such a poll the miner settles with the coordinator's listing again (recover.ts):
// a job it runs for us that nothing here knows is failed back as `orphaned`. At most once per
// spacing, so a coordinator answering 500 to every poll is not asked for its listing each time.
import { monotonicNow } from "../clock.js";
import { CoordinatorError } from "../coordinator/errors.js";
import { describeError } from "../describe-error.js";
import type { Logger } from "../log.js";

/** The least time between two settlements after failed polls. */
export const ORPHAN_SWEEP_SPACING_MS = 30_000;

/** Poll failures after which a job may have been handed over without our knowing. */
function mayHaveHandedOver(err: unknown): boolean {
  return err instanceof CoordinatorError && (err.kind === "server" || err.kind === "timeout");
}

export class OrphanSweep {
  private settle: (() => Promise<void>) | null = null;
  private lastAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly log: Logger,
    private readonly spacingMs = ORPHAN_SWEEP_SPACING_MS,
  ) {}

  /** The settlement recover() hands back (none until the miner has recovered). */
  use(settle: () => Promise<void>): void {
    this.settle = settle;
  }

  /**
   * After a failed poll: settle with the coordinator when the failure may hide a hand-over, unless
   * one ran within the spacing. Call while no poll is in flight (a job arriving meanwhile would
   * look orphaned); never rejects.
   */
  async afterPollError(err: unknown): Promise<void> {
    if (!this.settle || !mayHaveHandedOver(err)) return;
    const now = monotonicNow();
    if (now - this.lastAt < this.spacingMs) return;
    this.lastAt = now;
    this.log.debug(
      { event: "orphan_check", after: describeError(err)["message"] },
      "a poll failed on the coordinator's side: asking which jobs it runs for this miner",
    );
    await this.settle().catch((e: unknown) =>
      this.log.warn(
        { event: "orphan_check_failed", err: describeError(e) },
        "could not settle with the coordinator",
      ),
    );
  }
}
