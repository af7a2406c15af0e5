// What the miner loop sends: registration capabilities and per-GPU heartbeat metrics.
import type { GpuCapability, Platform } from "../coordinator/types.js";
import type { GpuSnapshot } from "./types.js";

export interface GpuCapabilities {
  gpus: GpuCapability[];
  cuda: string | null;
  platform: Platform;
}

/** What inference computes on (src/gpu/compute-verdict.ts); absent: NVML's cards are taken at their word. */
export interface ComputeAdvert {
  platform: Platform;
  advertiseGpus: boolean;
}

/**
 * Healthy GPUs only: a lost GPU must not attract jobs. No GPU → platform "CPU". A runtime that does
 * not compute on the cards (CPU by opt-in) advertises none of them.
 */
export function capabilitiesFromSnapshot(s: GpuSnapshot | null, compute?: ComputeAdvert): GpuCapabilities {
  if (compute && !compute.advertiseGpus) return { gpus: [], cuda: null, platform: compute.platform };
  const gpus = (s?.devices ?? [])
    .filter((d) => !d.error)
    .map((d) => ({
      name: d.name,
      memory_mb: d.memoryTotalMiB,
      uuid: d.uuid,
      compute_capability: d.computeCapability,
    }));
  return {
    gpus,
    cuda: gpus.length > 0 ? (s?.cudaDriverVersion ?? null) : null,
    platform: compute?.platform ?? (gpus.length > 0 ? "CUDA" : "CPU"),
  };
}

export interface GpuHeartbeat {
  index: number;
  uuid: string;
  name: string;
  utilization_gpu: number | null;
  utilization_memory: number | null;
  memory_used_mb: number | null;
  memory_total_mb: number | null;
  memory_free_mb: number | null;
  temperature_c: number | null;
  power_w: number | null;
  /** Present only for a GPU that could not be read. */
  error?: string;
}

export function heartbeatMetrics(s: GpuSnapshot | null, compute?: ComputeAdvert): GpuHeartbeat[] {
  if (compute && !compute.advertiseGpus) return [];
  return (s?.devices ?? []).map((d) => ({
    index: d.index,
    uuid: d.uuid,
    name: d.name,
    utilization_gpu: d.utilizationGpuPct,
    utilization_memory: d.utilizationMemoryPct,
    memory_used_mb: d.memoryUsedMiB,
    memory_total_mb: d.memoryTotalMiB,
    memory_free_mb: d.memoryFreeMiB,
    temperature_c: d.temperatureC,
    power_w: d.powerDrawW,
    ...(d.error ? { error: d.error.message } : {}),
  }));
}
