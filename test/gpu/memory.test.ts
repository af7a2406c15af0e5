// VRAM helpers on snapshots: own process VRAM, the post-job leak check, clock-reason decoding.
import { describe, expect, it } from "vitest";
import { decodeClockEventReasons, ownVramMiB, VramWatch } from "../../src/gpu/index.js";
import type { GpuDevice, GpuSnapshot } from "../../src/gpu/types.js";

function dev(uuid: string, used: number | null, processes: GpuDevice["processes"]): GpuDevice {
  return {
    index: 0,
    uuid,
    name: "gpu",
    pciBusId: null,
    memoryTotalMiB: 24576,
    memoryUsedMiB: used,
    memoryFreeMiB: used === null ? null : 24576 - used,
    utilizationGpuPct: null,
    utilizationMemoryPct: null,
    temperatureC: null,
    powerDrawW: null,
    powerLimitW: null,
    computeCapability: null,
    processes,
  };
}
const snap = (devices: GpuDevice[]): GpuSnapshot => ({
  source: "nvml",
  reason: null,
  driverVersion: null,
  cudaDriverVersion: null,
  devices,
  takenAt: 0,
});

describe("VRAM accounting", () => {
  it("sums this pid over every GPU's process list; null when no list is known", () => {
    const s = snap([
      dev("a", 5000, [
        { pid: 10, usedMemoryMiB: 3000 },
        { pid: 11, usedMemoryMiB: 1000 },
      ]),
      dev("b", 900, [{ pid: 10, usedMemoryMiB: 500 }]),
    ]);
    expect(ownVramMiB(s, 10)).toBe(3500);
    // A pid NVML does not list (e.g. a container's own pid namespace) is unknown, not zero.
    expect(ownVramMiB(s, 99)).toBeNull();
    expect(ownVramMiB(snap([dev("a", 100, null)]), 10)).toBeNull();
  });

  it("reports MiB that did not come back after a job, from the process list first", () => {
    const before = snap([dev("a", 2000, [{ pid: 10, usedMemoryMiB: 1000 }])]);
    const w = new VramWatch(before, 10);
    // Another tenant grew by 4000 MiB: not ours.
    expect(w.leakedMiB(snap([dev("a", 6000, [{ pid: 10, usedMemoryMiB: 1000 }])]))).toBe(0);
    expect(w.leakedMiB(snap([dev("a", 2300, [{ pid: 10, usedMemoryMiB: 1300 }])]))).toBe(300);
  });

  it("falls back to device used memory keyed by UUID when lists are unknown", () => {
    const w = new VramWatch(snap([dev("a", 2000, null), dev("b", 100, null)]), 10);
    // Order changed (indexes renumbered): UUIDs still match.
    expect(w.leakedMiB(snap([dev("b", 100, null), dev("a", 2250, null)]))).toBe(250);
    expect(w.leakedMiB(snap([dev("a", 1500, null)]))).toBe(0);
  });

  it("in a container (NVML lists host pids, never ours) still sees memory that did not come back", () => {
    const w = new VramWatch(snap([dev("a", 2000, [{ pid: 31337, usedMemoryMiB: 1000 }])]), 10);
    expect(w.leakedMiB(snap([dev("a", 2600, [{ pid: 31337, usedMemoryMiB: 1600 }])]))).toBe(600);
  });

  it("decodes clock-event reason bits, keeping unknown bits visible", () => {
    expect(decodeClockEventReasons(0)).toEqual([]);
    expect(decodeClockEventReasons(0x1 | 0x8 | 0x1000)).toEqual(["gpu_idle", "hw_slowdown", "0x1000"]);
    expect(decodeClockEventReasons(2 ** 40 + 0x4)).toEqual(["sw_power_cap", "0x10000000000"]);
  });
});
