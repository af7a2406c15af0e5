// What a miner does before its first poll, besides registering: open its state (a full disk only
// pauses mining; one that can never be written stops it), and warm the models it will serve, so
// the first job after a start is as fast as the rest.
import { describeError } from "../describe-error.js";
import type { Logger } from "../log.js";
import { ExitCode } from "./exit-codes.js";
import { type StateStorage, StateStorageError } from "./state-storage.js";
import { type MinerDeps, MinerFatalError } from "./types.js";

/**
 * Check the state directory, then open the outbox and journal. Their logs are state files every
 * probe must find appendable, and each write that fails in them pauses mining (state-storage.ts).
 */
export async function openState(
  storage: StateStorage,
  d: Pick<MinerDeps, "outbox" | "journal">,
): Promise<void> {
  storage.watch([d.outbox.logPath, d.journal.logPath]);
  for (const store of [d.outbox, d.journal]) store.onFault((err, file) => storage.noteFailure(err, file));
  try {
    await storage.checkAtStart();
  } catch (err) {
    if (err instanceof StateStorageError) throw new MinerFatalError(err.message, ExitCode.stateUnwritable);
    throw err;
  }
  for (const store of [d.outbox, d.journal]) {
    try {
      await store.open();
    } catch (err) {
      if (!storage.noteFailure(err)) throw err;
    }
  }
}

/** Load the models to serve (registration does not wait for this; the first poll does). Never throws. */
export async function warmUp(d: Pick<MinerDeps, "warmUp">, signal: AbortSignal, log: Logger): Promise<void> {
  if (!d.warmUp) return;
  const t0 = performance.now();
  try {
    const models = await d.warmUp(signal);
    log.info(
      { event: "models_warm", models, ms: Math.round(performance.now() - t0) },
      models.length > 0 ? `warm before the first job: ${models.join(", ")}` : "no model preloaded",
    );
  } catch (err) {
    log.warn(
      { event: "warm_up_failed", err: describeError(err) },
      "warm-up failed; models load on their first job instead",
    );
  }
}
