// VRAM decisions from measured figures: admission (does a model fit?), device choice, this
// process's own VRAM, and the post-job check that memory came back.
import type { GpuDevice, GpuSnapshot } from "./types.js";

const MiB = 1024 * 1024;

export interface AdmitOptions {
  /**
   * Multiplier on the model file size for what loading it really takes: weights plus KV cache,
   * compute buffers and scratch. 1.2 covers llama.cpp with a modest context; raise it for long
   * contexts. Default 1.2.
   */
  overheadFactor?: number;
  /** Fixed MiB on top for the CUDA context and allocator slack (~300-500 MiB per process). Default 512. */
  headroomMiB?: number;
  /** Only consider this GPU index. */
  deviceIndex?: number;
}

export type AdmitVerdict =
  | { ok: true; deviceIndex: number; freeMiB: number | null; needMiB: number }
  | { ok: false; reason: string; needMiB: number };

export const DEFAULT_OVERHEAD_FACTOR = 1.2;
export const DEFAULT_HEADROOM_MIB = 512;

const healthy = (d: GpuDevice): boolean => !d.error;

/** The healthy GPU with the most free memory (null when none reports free memory). */
export function pickDevice(s: GpuSnapshot | null): GpuDevice | null {
  let best: GpuDevice | null = null;
  for (const d of s?.devices ?? []) {
    if (!healthy(d) || d.memoryFreeMiB === null) continue;
    if (best === null || d.memoryFreeMiB > (best.memoryFreeMiB ?? -1)) best = d;
  }
  return best;
}

export function needMiB(modelBytes: number, opts: AdmitOptions = {}): number {
  const factor = opts.overheadFactor ?? DEFAULT_OVERHEAD_FACTOR;
  const headroom = opts.headroomMiB ?? DEFAULT_HEADROOM_MIB;
  return Math.ceil((Math.max(0, modelBytes) / MiB) * factor + headroom);
}

/**
 * Does a model of `modelBytes` fit? No GPU at all → ok on the CPU (deviceIndex -1). GPUs whose
 * free memory is unknown → ok on the first healthy one (freeMiB null): nothing measured to refuse on.
 */
export function admit(s: GpuSnapshot | null, modelBytes: number, opts: AdmitOptions = {}): AdmitVerdict {
  const need = needMiB(modelBytes, opts);
  const all = (s?.devices ?? []).filter(
    (d) => opts.deviceIndex === undefined || d.index === opts.deviceIndex,
  );
  if (all.length === 0) {
    if (opts.deviceIndex !== undefined && (s?.devices.length ?? 0) > 0) {
      return { ok: false, reason: `GPU ${opts.deviceIndex} does not exist`, needMiB: need };
    }
    return { ok: true, deviceIndex: -1, freeMiB: null, needMiB: need };
  }
  const usable = all.filter(healthy);
  if (usable.length === 0) {
    const why = all.map((d) => `GPU ${d.index} (${d.uuid}): ${d.error?.message ?? "unreadable"}`).join("; ");
    return { ok: false, reason: `no usable GPU: ${why}`, needMiB: need };
  }
  const best = pickDevice({ ...(s as GpuSnapshot), devices: usable });
  if (best === null) {
    const first = usable[0]!;
    return { ok: true, deviceIndex: first.index, freeMiB: null, needMiB: need };
  }
  const free = best.memoryFreeMiB ?? 0;
  if (need > free) {
    const modelMiB = Math.ceil(modelBytes / MiB);
    const factor = opts.overheadFactor ?? DEFAULT_OVERHEAD_FACTOR;
    const headroom = opts.headroomMiB ?? DEFAULT_HEADROOM_MIB;
    return {
      ok: false,
      needMiB: need,
      reason:
        `model needs ${need} MiB of VRAM (${modelMiB} MiB file × ${factor} + ${headroom} MiB headroom) ` +
        `but GPU ${best.index} (${best.name}, the most free of ${usable.length}) has ${free} MiB free`,
    };
  }
  return { ok: true, deviceIndex: best.index, freeMiB: free, needMiB: need };
}

/**
 * MiB this pid holds across all GPUs, from the process lists. null when no list is known (the
 * source cannot tell), 0 when lists exist and the pid is not in them.
 */
export function ownVramMiB(s: GpuSnapshot | null, pid: number = process.pid): number | null {
  // null unless this pid is listed: in a container NVML reports host pids, so "absent" means
  // "unknown", not "none" (the caller then falls back to per-device used memory).
  let found = false;
  let total = 0;
  for (const d of s?.devices ?? []) {
    for (const p of d.processes ?? []) {
      if (p.pid !== pid) continue;
      found = true;
      if (p.usedMemoryMiB !== null) total += p.usedMemoryMiB;
    }
  }
  return found ? total : null;
}

/**
 * Before/after a job: how many MiB did not come back. Uses this process's own figure when the
 * process lists are known (other tenants cannot skew it), else the growth of used memory per
 * device (keyed by UUID, not index).
 */
export class VramWatch {
  private readonly ownBefore: number | null;
  private readonly usedBefore: Map<string, number>;

  constructor(
    before: GpuSnapshot,
    private readonly pid: number = process.pid,
  ) {
    this.ownBefore = ownVramMiB(before, pid);
    this.usedBefore = new Map();
    for (const d of before.devices)
      if (d.memoryUsedMiB !== null) this.usedBefore.set(d.uuid, d.memoryUsedMiB);
  }

  /** MiB not released since the "before" snapshot (0 when everything came back). */
  leakedMiB(after: GpuSnapshot): number {
    const ownAfter = ownVramMiB(after, this.pid);
    if (this.ownBefore !== null && ownAfter !== null) return Math.max(0, ownAfter - this.ownBefore);
    let leaked = 0;
    for (const d of after.devices) {
      const b = this.usedBefore.get(d.uuid);
      if (b !== undefined && d.memoryUsedMiB !== null) leaked += Math.max(0, d.memoryUsedMiB - b);
    }
    return leaked;
  }
}
