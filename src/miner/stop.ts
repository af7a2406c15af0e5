// The steps of a graceful stop after polling has ended, all within one budget
// (docs/architecture.md#durability-rules, "Shutdown"): let in-flight jobs finish within the grace
// period and abort the rest, flush what is owed to the coordinator, deregister, release the
// backend and the client. What cannot be delivered in time stays on disk for the next start.
import { within } from "../backoff.js";
import { describeError } from "../describe-error.js";
import type { Logger } from "../log.js";
import type { HeartbeatSchedule } from "./heartbeat.js";
import type { Reporter } from "./reporter.js";
import {
  BACKEND_CLOSE_TIMEOUT_MS,
  DEREGISTER_TIMEOUT_MS,
  type MinerDeps,
  type MinerSettings,
} from "./types.js";
import type { AbortWhy } from "./watchdog.js";

export interface StopContext {
  d: Pick<MinerDeps, "outbox" | "client" | "backend">;
  s: MinerSettings;
  log: Logger;
  reporter: Reporter;
  heartbeats: HeartbeatSchedule;
  /** The jobs running now (read when needed: one may start while the stop waits). */
  running(): { done: Promise<void>; abort: AbortController }[];
  /** Whether the miner is registered now (a registration may finish during the grace period). */
  registered(): boolean;
  /** A wedged backend holds its locks: its jobs are not waited for, nor is its close. */
  wedged: boolean;
  /** Milliseconds left of the stop's budget, at most `cap`. */
  left(cap: number): number;
}

export async function stopMining(c: StopContext): Promise<void> {
  // 1. Let in-flight jobs finish within the grace period, then fail the rest as "shutting down".
  if (c.running().length > 0 && !c.wedged) {
    const all = Promise.all(c.running().map((r) => r.done));
    const finished = await within(all, c.left(c.s.gracePeriodMs));
    if (!finished) {
      const left = c.running();
      for (const r of left) r.abort.abort("shutting_down" satisfies AbortWhy);
      await within(Promise.all(left.map((r) => r.done)), c.left(c.s.abortGraceMs + 1000));
    }
  }
  // 2. Flush the outbox and failure reports for a bounded time; what is left is sent on the next start.
  await c.reporter.flush(c.left(c.s.flushTimeoutMs));
  c.heartbeats.stop();
  const onDisk = await c.d.outbox.depth().catch(() => -1);
  if (onDisk > 0)
    c.log.warn(
      { event: "outbox_left", count: onDisk },
      "results left in the outbox; they are submitted on the next start",
    );

  // 3. Deregister (best effort) and release the backend.
  if (c.registered()) {
    await c.d.client
      .deregister(Math.max(1, c.left(DEREGISTER_TIMEOUT_MS)))
      .catch((err: unknown) =>
        c.log.warn({ event: "deregister_failed", err: describeError(err) }, "deregister failed"),
      );
  }
  if (!c.wedged) await within(c.d.backend.close(), c.left(BACKEND_CLOSE_TIMEOUT_MS));
  await within(
    c.d.client.close().catch(() => undefined),
    1000,
  );
}
