// A worker sees only its own cards. NVML lists every GPU on the host whatever
// CUDA_VISIBLE_DEVICES says, so a worker's snapshots are filtered by UUID here: registration,
// heartbeats, VRAM admission and metrics then all speak of the worker's cards alone.
import type { GpuInfoSource, GpuSnapshot } from "./types.js";

export function restrictToGpus(source: GpuInfoSource, uuids: readonly string[]): GpuInfoSource {
  const keep = new Set(uuids);
  return {
    kind: source.kind,
    reason: source.reason,
    async snapshot(): Promise<GpuSnapshot> {
      const s = await source.snapshot();
      return { ...s, devices: s.devices.filter((d) => keep.has(d.uuid)) };
    },
    close: () => source.close(),
  };
}
