// GPU policy for a miner: how fresh a snapshot must be, whether a model may be loaded now (VRAM
// admission), what a job's GPU metrics are, and whether VRAM came back after a job. compose.ts
// only wires this to the loop; the decisions live here, beside the facts they use.

import { monotonicNow } from "../clock.js";
import type { Logger } from "../log.js";
import type { AdmissionCode } from "../miner/types.js";
import { admit, VramWatch } from "./memory.js";
import type { GpuInfoSource, GpuSnapshot } from "./types.js";

/** What the policy needs to know about the inference backend. */
export interface ModelFacts {
  isLoaded?(name: string): boolean;
  listModels(): { name: string; sizeBytes: number | null }[];
}

export interface GpuPolicyOptions {
  gpu: GpuInfoSource;
  models: ModelFacts;
  log: Logger;
  /** `--gpu cpu`: inference on the CPU, so no VRAM admission. */
  cpuOnly: boolean;
  /** `--unload-after-job`: then all VRAM taken by a job must come back. */
  unloadAfterJob: boolean;
}

export interface Refusal {
  errorCode: AdmissionCode;
  message: string;
}

export interface GpuPolicy {
  /** A fresh snapshot, or null when it failed: decisions are never made on stale memory figures. */
  snapshot(): Promise<GpuSnapshot | null>;
  /** The last snapshot taken (for facts that need not be fresh), or a new one. */
  recent(): Promise<GpuSnapshot | null>;
  /** Why `model` cannot be loaded here now, or null to go ahead. */
  admission(model: string): Promise<Refusal | null>;
  /** Call before a job; call what it returns after: logs VRAM that did not come back. */
  memoryProbe(): Promise<() => Promise<void>>;
  jobMetrics(): { gpu_utilization: number | null; memory_used: number | null };
}

export function createGpuPolicy(o: GpuPolicyOptions): GpuPolicy {
  let last: GpuSnapshot | null = null;
  /** When `last` was taken, on the monotonic clock (its takenAt is wall time, for display). */
  let lastAt = 0;
  // NVML snapshots cost microseconds; nvidia-smi ones spawn a process, so reuse a recent one there.
  const maxAgeMs = o.gpu.kind === "nvidia-smi" ? 2000 : 0;
  const snapshot = async (): Promise<GpuSnapshot | null> => {
    if (maxAgeMs > 0 && last && monotonicNow() - lastAt < maxAgeMs) return last;
    try {
      last = await o.gpu.snapshot();
      lastAt = monotonicNow();
      return last;
    } catch (err) {
      o.log.warn({ event: "gpu_snapshot_failed", err: (err as Error).message }, "GPU snapshot failed");
      return null;
    }
  };
  return {
    snapshot,
    recent: async () => last ?? (await snapshot()),
    async admission(model) {
      if (o.cpuOnly || o.gpu.kind === "none") return null;
      const s = await snapshot();
      if (s && s.devices.length > 0 && s.devices.every((d) => d.error)) {
        const why = s.devices.map((d) => `GPU ${d.index} (${d.uuid}): ${d.error?.message}`).join("; ");
        return { errorCode: "gpu_unavailable", message: `no usable GPU: ${why}` };
      }
      // A loaded model's memory is already taken (and counted as used): nothing new to fit.
      if (o.models.isLoaded?.(model)) return null;
      const info = o.models.listModels().find((m) => m.name === model);
      // Unknown size or no snapshot: no figure to refuse on (the load itself reports a real failure).
      if (!info?.sizeBytes || !s) return null;
      const verdict = admit(s, info.sizeBytes);
      return verdict.ok ? null : { errorCode: "insufficient_vram", message: verdict.reason };
    },
    async memoryProbe() {
      const s = await snapshot();
      if (!s || s.devices.length === 0) return async () => undefined;
      const watch = new VramWatch(s, process.pid);
      return async () => {
        const after = await snapshot();
        if (!after) return;
        const leaked = watch.leakedMiB(after);
        // Models stay loaded between jobs unless --unload-after-job: only then must it all come back.
        if (leaked > 0 && o.unloadAfterJob) {
          o.log.warn(
            { event: "vram_not_released", leakedMiB: leaked },
            "VRAM taken by the job did not come back",
          );
        } else if (leaked > 0) {
          o.log.debug({ event: "vram_held", heldMiB: leaked }, "VRAM held by loaded models after the job");
        }
      };
    },
    jobMetrics() {
      const d = last?.devices[0];
      return { gpu_utilization: d?.utilizationGpuPct ?? null, memory_used: d?.memoryUsedMiB ?? null };
    },
  };
}
