// This miner's membership at the coordinator: register (retrying until it works, or until a
// fatal answer), and heartbeats carrying the true in-flight count. What a failure of either means
// is the retry rule's (retry.ts): a heartbeat's 404 means the coordinator forgot this miner, and it
// registers again.
import { type Backoff, backoffFor, sleep } from "../backoff.js";
import { describeError } from "../describe-error.js";
import type { Logger } from "../log.js";
import type { RetryRule } from "./retry.js";
import { type MinerDeps, MinerFatalError, type MinerSettings, type MinerStats } from "./types.js";

export interface RegistrationContext {
  d: Pick<MinerDeps, "client" | "capabilities" | "heartbeatMetadata">;
  s: MinerSettings;
  log: Logger;
  retryRule: RetryRule;
  /** Aborted when the miner stops: a retry wait ends at once. */
  stopSignal: AbortSignal;
  isStopping(): boolean;
  /**
   * The in-flight count the coordinator should hold: jobs running plus verdicts not yet
   * acknowledged. Upstream *sets* its count from this, and frees a slot on /result but not on /fail.
   */
  inflight(): number;
  stats(): MinerStats;
  /** A registration that can never work (e.g. a bad API key) stops the miner. */
  onFatal(err: unknown): void;
}

export class Registration {
  /** Whether the coordinator knows this miner now. */
  registered = false;
  /** Failed heartbeats in a row come back sooner than the interval, on this schedule. */
  private readonly beatBackoff: Backoff = backoffFor("heartbeat");

  constructor(private readonly c: RegistrationContext) {}

  /** Register, retrying per the retry rule; throws MinerFatalError when it can never work. */
  async register(): Promise<void> {
    const { d, s, log } = this.c;
    const backoff = backoffFor("register");
    for (;;) {
      if (this.c.isStopping()) return;
      try {
        const caps = await d.capabilities();
        await d.client.register(caps, s.concurrency);
        this.registered = true;
        log.info(
          {
            event: "registered",
            protocol: d.client.protocol,
            models: caps.models,
            platform: caps.platform,
            gpus: caps.gpus.length,
            concurrency: s.concurrency,
          },
          "registered with the coordinator",
        );
        return;
      } catch (err) {
        const verdict = this.c.retryRule(err, "register", backoff);
        if (verdict.kind === "fatal") throw new MinerFatalError(verdict.message, verdict.exitCode);
        const delay = verdict.kind === "retry" ? verdict.afterMs : backoff.next(null);
        log.warn(
          { event: "register_retry", err: describeError(err), retryInMs: delay },
          "registration failed; retrying",
        );
        await sleep(delay, this.c.stopSignal);
      }
    }
  }

  /** Register again from scratch (the coordinator said it no longer knows this miner). */
  async reregister(): Promise<void> {
    this.registered = false;
    await this.register();
  }

  /**
   * One heartbeat. Resolves with how soon to send the next when this one failed and the retry rule
   * says try again (the schedule never waits longer than its interval), else null. Never rejects.
   */
  async heartbeat(): Promise<number | null> {
    const { d, log } = this.c;
    try {
      const metadata = await d.heartbeatMetadata();
      await d.client.heartbeat({
        inflight: this.c.inflight(),
        metadata: { ...metadata, miner: this.c.stats() },
      });
      this.beatBackoff.reset();
      return null;
    } catch (err) {
      const verdict = this.c.retryRule(err, "heartbeat", this.beatBackoff);
      if (verdict.kind === "gone" && !this.c.isStopping()) {
        log.warn({ event: "reregister" }, "coordinator no longer knows this miner; registering again");
        await this.reregister().catch((e: unknown) => this.c.onFatal(e));
        return null;
      }
      const retryInMs = verdict.kind === "retry" ? verdict.afterMs : null;
      log.warn({ event: "heartbeat_failed", err: describeError(err), retryInMs }, "heartbeat failed");
      return retryInMs;
    }
  }
}
