// Decodes the addon's packed snapshot (one Float64Array, NaN = null) into NvmlSnapshot objects:
// building objects in JS is ~10× cheaper than property-by-property through N-API.
import type { NvmlDevice, NvmlPackedSnapshot, NvmlSnapshot } from "../../binding.js";

/** Numeric fields per device, in native/addon.cc toPacked() order. */
export const PACKED_FIELDS = 32;

export function unpackSnapshot(p: NvmlPackedSnapshot): NvmlSnapshot {
  const n = p.numbers;
  const v = (i: number): number | null => {
    const x = n[i]!;
    return Number.isNaN(x) ? null : x;
  };
  const b = (i: number): boolean | null => {
    const x = n[i]!;
    return Number.isNaN(x) ? null : x !== 0;
  };
  const str = (i: number): string | null => p.strings[i] ?? null;
  const devices: NvmlDevice[] = new Array(p.count);
  for (let d = 0; d < p.count; d++) {
    const o = d * PACKED_FIELDS;
    const s = d * 4;
    const code = v(o + 29);
    if (code !== null) {
      devices[d] = { index: d, error: { code, message: str(s + 3) ?? "" }, name: str(s), uuid: str(s + 1) };
      continue;
    }
    const procStart = v(o + 30);
    const procCount = v(o + 31);
    let processes: { pid: number; usedMemoryBytes: number | null }[] | null = null;
    if (procStart !== null && procCount !== null) {
      processes = new Array(procCount);
      for (let k = 0; k < procCount; k++) {
        const at = (procStart + k) * 2;
        const mem = p.processes[at + 1]!;
        processes[k] = { pid: p.processes[at]!, usedMemoryBytes: Number.isNaN(mem) ? null : mem };
      }
    }
    const ccMajor = v(o + 27);
    const ccMinor = v(o + 28);
    devices[d] = {
      index: d,
      error: null,
      name: str(s),
      uuid: str(s + 1),
      pciBusId: str(s + 2),
      memoryTotalBytes: v(o),
      memoryUsedBytes: v(o + 1),
      memoryFreeBytes: v(o + 2),
      memoryReservedBytes: v(o + 3),
      utilizationGpuPct: v(o + 4),
      utilizationMemoryPct: v(o + 5),
      temperatureC: v(o + 6),
      powerDrawMw: v(o + 7),
      powerLimitMw: v(o + 8),
      powerEnforcedLimitMw: v(o + 9),
      totalEnergyMj: v(o + 10),
      smClockMHz: v(o + 11),
      memClockMHz: v(o + 12),
      smClockMaxMHz: v(o + 13),
      memClockMaxMHz: v(o + 14),
      fanSpeedPct: v(o + 15),
      pstate: v(o + 16),
      clockEventReasons: v(o + 17),
      eccModeCurrent: b(o + 18),
      eccModePending: b(o + 19),
      eccUncorrectedVolatile: v(o + 20),
      pcieLinkGen: v(o + 21),
      pcieLinkWidth: v(o + 22),
      pcieLinkGenMax: v(o + 23),
      pcieLinkWidthMax: v(o + 24),
      pcieTxKBs: v(o + 25),
      pcieRxKBs: v(o + 26),
      computeCapability: ccMajor !== null && ccMinor !== null ? { major: ccMajor, minor: ccMinor } : null,
      processes,
    };
  }
  return {
    driverVersion: p.driverVersion,
    nvmlVersion: p.nvmlVersion,
    cudaDriverVersion: p.cudaDriverVersion,
    devices,
  };
}
