// A sick card drains itself. The supervisor watches every card's health (it owns NVML for the
// host: one event stream, and it keeps watching while a drained card's worker is gone), and a
// worker whose card stops taking jobs (GpuHealthMonitor's verdict: sick, lost, or drained by the
// operator) is told to drain: it stops polling, fails what its card cannot finish with
// gpu_unavailable, deregisters and exits; it is not restarted. When the condition clears (or the
// operator undrains it, which also forgets what events taught) the worker is started again and
// registers anew. The monitor's verdict is the one source of truth for both ways. The operator's
// drains are kept in the state directory (drain-file.ts) and applied again at the next start.
import { GpuHealthMonitor } from "../gpu/health-monitor.js";
import type { HealthVerdict } from "../gpu/health-policy.js";
import type { GpuInfoSource } from "../gpu/types.js";
import type { Logger } from "../log.js";
import type { GpuHealthRow } from "../ops/metrics.js";
import { readDrains, writeDrains } from "./drain-file.js";

export interface DrainTarget {
  key: string;
  minerId: string;
  indexes: number[];
  uuids: string[];
}

export interface DrainState {
  /** Why, as one line: "GPU 2 drained: Xid 79: GPU has fallen off the bus". */
  reason: string;
  by: "health" | "operator";
  /** The card cannot finish running jobs (sick, lost): the worker fails them at once. */
  failRunning: boolean;
  since: string;
}

export type DrainListener = (key: string, state: DrainState | null) => void;

export class DrainError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export class HostDrain {
  private readonly states = new Map<string, DrainState>();
  /** UUIDs the operator drained (the monitor's drained list). */
  private readonly operator: Set<string>;
  /** The last write of the operator's drains (one at a time, in order). */
  private saving: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly monitor: GpuHealthMonitor,
    private readonly targets: DrainTarget[],
    private readonly log: Logger,
    private readonly onChange: DrainListener,
    /** Where the operator's drains are kept, and those kept there at start. */
    private readonly kept: { stateDir: string; drained: readonly string[] } | null = null,
  ) {
    this.operator = new Set(kept?.drained ?? []);
    if (this.operator.size > 0) monitor.setDrained(this.operator);
    monitor.onHealthChange(() => this.reevaluate());
  }

  state(key: string): DrainState | null {
    return this.states.get(key) ?? null;
  }

  drained(): { minerId: string; state: DrainState }[] {
    return this.targets.flatMap((t) => {
      const s = this.states.get(t.key);
      return s ? [{ minerId: t.minerId, state: s }] : [];
    });
  }

  verdicts(): HealthVerdict[] {
    return this.monitor.verdicts();
  }

  /**
   * The operator's word (POST /drain/ID, /undrain/ID): ID is a miner id, GPU index or UUID. Kept
   * in the state directory before it answers; a failed write still drains now, and says so.
   */
  async command(action: "drain" | "undrain", id: string): Promise<{ minerId: string; message: string }> {
    const t = this.find(id);
    if (!t) throw new DrainError(`no worker or GPU "${id}" on this host`, 404);
    for (const u of t.uuids) {
      if (action === "drain") this.operator.add(u);
      else this.operator.delete(u);
    }
    this.log.info(
      { event: `gpu_${action}_asked`, worker: t.minerId },
      `the operator asked to ${action} ${t.minerId}`,
    );
    this.monitor.setDrained(this.operator);
    // Undrain is also the operator's word that the card was seen to: forget sticky Xids.
    if (action === "undrain") for (const u of t.uuids) this.monitor.clear(u);
    this.reevaluate();
    const s = this.states.get(t.key);
    const unkept = await this.keep();
    return {
      minerId: t.minerId,
      message: `${s ? `${t.minerId} is drained: ${s.reason}` : `${t.minerId} takes jobs`}${unkept}`,
    };
  }

  /** Writes the operator's drains; "" or why they will not survive a restart. */
  private async keep(): Promise<string> {
    const kept = this.kept;
    if (!kept) return "";
    const uuids = [...this.operator];
    const write = this.saving.then(() => writeDrains(kept.stateDir, uuids));
    this.saving = write.catch(() => undefined);
    try {
      await write;
      return "";
    } catch (err) {
      const why = (err as Error).message;
      this.log.warn(
        { event: "gpu_drains_unsaved", err: why },
        "the operator's drains could not be saved: a restart forgets this change",
      );
      return ` (not kept across a restart: ${why})`;
    }
  }

  private find(id: string): DrainTarget | undefined {
    return this.targets.find(
      (t) => t.minerId === id || t.uuids.includes(id) || t.indexes.map(String).includes(id),
    );
  }

  private reevaluate(): void {
    for (const t of this.targets) {
      const bad = t.uuids
        .map((u) => this.monitor.verdict(u))
        .filter((v): v is HealthVerdict => v !== undefined && !v.takesJobs);
      const before = this.states.get(t.key) ?? null;
      if (bad.length === 0) {
        if (before) {
          this.states.delete(t.key);
          this.onChange(t.key, null);
        }
        continue;
      }
      if (before) continue; // once drained, said once; it stays until every card takes jobs again
      const sick = bad.filter((v) => v.state !== "healthy");
      const state: DrainState = {
        reason: bad.map(describe).join("; "),
        by: sick.length > 0 ? "health" : "operator",
        failRunning: sick.length > 0,
        since: new Date().toISOString(),
      };
      this.states.set(t.key, state);
      this.onChange(t.key, state);
    }
  }
}

function describe(v: HealthVerdict): string {
  const why = v.reasons.filter((r) => r.severity !== "warning").map((r) => r.message);
  if (v.state === "healthy") return `GPU ${v.index} drained by the operator`;
  return `GPU ${v.index} drained: ${why.length ? why.join(", ") : v.state}`;
}

export interface HostHealth {
  drain: HostDrain;
  started: Promise<void>;
  stop(): Promise<void>;
}

/**
 * The host's health watch: a monitor on the host's NVML source and the drain it drives, with the
 * operator's drains kept in `stateDir` applied from the start. Throws DrainFileError on a bad file.
 */
export async function watchHostHealth(
  source: GpuInfoSource,
  targets: DrainTarget[],
  log: Logger,
  onChange: DrainListener,
  o: { stateDir?: string | undefined; intervalMs?: number } = {},
): Promise<HostHealth> {
  const intervalMs =
    o.intervalMs ?? (Number(process.env["AITBC_GPU_HEALTH_INTERVAL_MS"] ?? 10_000) || 10_000);
  const kept =
    o.stateDir === undefined ? null : { stateDir: o.stateDir, drained: await readDrains(o.stateDir) };
  if (kept && kept.drained.length > 0)
    log.info(
      { event: "gpu_drains_restored", uuids: kept.drained },
      `the operator's drains kept from before: ${kept.drained.join(", ")} (gpu undrain ID puts a card back)`,
    );
  const monitor = new GpuHealthMonitor({ source, log: log.child({ component: "gpu-health" }), intervalMs });
  const drain = new HostDrain(monitor, targets, log, onChange, kept);
  const started = monitor.start().catch((err: unknown) => {
    // Without health reads the host still mines; only drains by health are off.
    log.warn(
      { event: "gpu_health_unavailable", err: (err as Error).message },
      "GPU health watch failed to start",
    );
  });
  return { drain, started, stop: () => monitor.stop() };
}

/** Each card's state for aitbc_gpu_health ("drained": the operator's word on a healthy card). */
export function gpuHealthRows(verdicts: HealthVerdict[]): GpuHealthRow[] {
  return verdicts.map((v) => ({
    index: v.index,
    uuid: v.uuid,
    state: v.state === "healthy" && v.drained ? "drained" : v.state,
  }));
}
