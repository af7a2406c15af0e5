// What watches the jobs a miner holds, beside running them: cancelled work stops (job-cancel.ts),
// and after a poll that failed on the coordinator's side no job is left orphaned there
// (orphan-sweep.ts). Built once per Miner from its dependencies.
import { CancelWatch } from "./job-cancel.js";
import { OrphanSweep } from "./orphan-sweep.js";
import type { Reporter } from "./reporter.js";
import type { MinerDeps } from "./types.js";

export interface JobWatch {
  cancels: CancelWatch;
  orphans: OrphanSweep;
}

export function watchJobs(o: {
  d: MinerDeps;
  reporter: Reporter;
  storage: { noteFailure(err: unknown): boolean };
  /** The miner's stop: no question goes out after it. */
  signal: AbortSignal;
  /** A job was cancelled (upstream frees its slot on the next heartbeat). */
  onCancelled(): void;
}): JobWatch {
  const { d } = o;
  return {
    cancels: new CancelWatch({
      client: d.client,
      journal: d.journal,
      outbox: d.outbox,
      reporter: o.reporter,
      log: d.log,
      storage: o.storage,
      signal: o.signal,
      onCancelled: () => o.onCancelled(),
      onEvent: d.onEvent ? (e) => d.onEvent?.(e) : undefined,
      timing: d.settings.cancelCheck,
    }),
    orphans: new OrphanSweep(d.log),
  };
}
