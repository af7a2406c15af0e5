// Decodes the addon's packed snapshot (one Float64Array, NaN = null) into NvmlSnapshot objects:
// building objects in JS is ~10× cheaper than property-by-property through N-API. The addon names
// its packed values (packedFields, packedStrings); the decoder finds each one by name once, at
// load, so a layout change on either side is an error naming the field, never shifted numbers.
import type { NvmlDevice, NvmlPackedLayout, NvmlPackedSnapshot, NvmlSnapshot } from "../../binding.js";

export type Unpack = (p: NvmlPackedSnapshot) => NvmlSnapshot;

/** The addon's packed layout lacks a value this decoder needs. */
export class PackedLayoutError extends Error {
  override readonly name = "PackedLayoutError";
}

function indexer(have: readonly string[], what: string): (name: string) => number {
  return (name) => {
    const i = have.indexOf(name);
    if (i < 0)
      throw new PackedLayoutError(`the NVML addon's ${what} lack "${name}" (it has: ${have.join(", ")})`);
    return i;
  };
}

/** Builds the decoder for this layout; throws PackedLayoutError naming the first missing value. */
export function packedDecoder(layout: NvmlPackedLayout): Unpack {
  const stride = layout.packedFields.length;
  const sStride = layout.packedStrings.length;
  const at = indexer(layout.packedFields, "packedFields");
  const sAt = indexer(layout.packedStrings, "packedStrings");
  // Offsets within a device's slice, looked up once; the loop below only adds and reads.
  const memTotal = at("memoryTotalBytes");
  const memUsed = at("memoryUsedBytes");
  const memFree = at("memoryFreeBytes");
  const memReserved = at("memoryReservedBytes");
  const utilGpu = at("utilizationGpuPct");
  const utilMem = at("utilizationMemoryPct");
  const temp = at("temperatureC");
  const powerDraw = at("powerDrawMw");
  const powerLimit = at("powerLimitMw");
  const powerEnforced = at("powerEnforcedLimitMw");
  const energy = at("totalEnergyMj");
  const smClock = at("smClockMHz");
  const memClock = at("memClockMHz");
  const smClockMax = at("smClockMaxMHz");
  const memClockMax = at("memClockMaxMHz");
  const fan = at("fanSpeedPct");
  const pstate = at("pstate");
  const reasons = at("clockEventReasons");
  const eccCurrent = at("eccModeCurrent");
  const eccPending = at("eccModePending");
  const eccUncorrected = at("eccUncorrectedVolatile");
  // The service counters came later: an addon built before them reads them as null (-1).
  const opt = (field: string): number => layout.packedFields.indexOf(field);
  const retiredPending = opt("retiredPagesPending");
  const remapCorr = opt("remappedRowsCorrectable");
  const remapUnc = opt("remappedRowsUncorrectable");
  const remapPending = opt("remapPending");
  const remapFailure = opt("remapFailure");
  const pcieGen = at("pcieLinkGen");
  const pcieWidth = at("pcieLinkWidth");
  const pcieGenMax = at("pcieLinkGenMax");
  const pcieWidthMax = at("pcieLinkWidthMax");
  const pcieTx = at("pcieTxKBs");
  const pcieRx = at("pcieRxKBs");
  const ccMajor = at("computeCapabilityMajor");
  const ccMinor = at("computeCapabilityMinor");
  const errorCode = at("errorCode");
  const processCount = at("processCount");
  const name = sAt("name");
  const uuid = sAt("uuid");
  const pciBusId = sAt("pciBusId");
  const errorMessage = sAt("errorMessage");

  return (p) => {
    const n = p.numbers;
    if (n.length !== p.count * stride || p.strings.length !== p.count * sStride) {
      throw new PackedLayoutError(`packed snapshot of ${p.count} devices does not match its layout`);
    }
    const v = (i: number): number | null => {
      const x = n[i]!;
      return Number.isNaN(x) ? null : x;
    };
    const b = (i: number): boolean | null => {
      const x = n[i]!;
      return Number.isNaN(x) ? null : x !== 0;
    };
    const vOpt = (field: number, o: number): number | null => (field < 0 ? null : v(o + field));
    const bOpt = (field: number, o: number): boolean | null => (field < 0 ? null : b(o + field));
    const str = (i: number): string | null => p.strings[i] ?? null;
    const devices: NvmlDevice[] = new Array(p.count);
    // Each device's (pid, usedMemoryBytes) pairs follow the previous devices' pairs.
    let procAt = 0;
    for (let d = 0; d < p.count; d++) {
      const o = d * stride;
      const s = d * sStride;
      const procCount = v(o + processCount);
      const procStart = procAt;
      procAt += procCount ?? 0;
      const code = v(o + errorCode);
      if (code !== null) {
        devices[d] = {
          index: d,
          error: { code, message: str(s + errorMessage) ?? "" },
          name: str(s + name),
          uuid: str(s + uuid),
        };
        continue;
      }
      let processes: { pid: number; usedMemoryBytes: number | null }[] | null = null;
      if (procCount !== null) {
        processes = new Array(procCount);
        for (let k = 0; k < procCount; k++) {
          const q = (procStart + k) * 2;
          const mem = p.processes[q + 1]!;
          processes[k] = { pid: p.processes[q]!, usedMemoryBytes: Number.isNaN(mem) ? null : mem };
        }
      }
      const major = v(o + ccMajor);
      const minor = v(o + ccMinor);
      devices[d] = {
        index: d,
        error: null,
        name: str(s + name),
        uuid: str(s + uuid),
        pciBusId: str(s + pciBusId),
        memoryTotalBytes: v(o + memTotal),
        memoryUsedBytes: v(o + memUsed),
        memoryFreeBytes: v(o + memFree),
        memoryReservedBytes: v(o + memReserved),
        utilizationGpuPct: v(o + utilGpu),
        utilizationMemoryPct: v(o + utilMem),
        temperatureC: v(o + temp),
        powerDrawMw: v(o + powerDraw),
        powerLimitMw: v(o + powerLimit),
        powerEnforcedLimitMw: v(o + powerEnforced),
        totalEnergyMj: v(o + energy),
        smClockMHz: v(o + smClock),
        memClockMHz: v(o + memClock),
        smClockMaxMHz: v(o + smClockMax),
        memClockMaxMHz: v(o + memClockMax),
        fanSpeedPct: v(o + fan),
        pstate: v(o + pstate),
        clockEventReasons: v(o + reasons),
        eccModeCurrent: b(o + eccCurrent),
        eccModePending: b(o + eccPending),
        eccUncorrectedVolatile: v(o + eccUncorrected),
        retiredPagesPending: bOpt(retiredPending, o),
        remappedRowsCorrectable: vOpt(remapCorr, o),
        remappedRowsUncorrectable: vOpt(remapUnc, o),
        remapPending: bOpt(remapPending, o),
        remapFailure: bOpt(remapFailure, o),
        pcieLinkGen: v(o + pcieGen),
        pcieLinkWidth: v(o + pcieWidth),
        pcieLinkGenMax: v(o + pcieGenMax),
        pcieLinkWidthMax: v(o + pcieWidthMax),
        pcieTxKBs: v(o + pcieTx),
        pcieRxKBs: v(o + pcieRx),
        computeCapability: major !== null && minor !== null ? { major, minor } : null,
        processes,
      };
    }
    return {
      driverVersion: p.driverVersion,
      nvmlVersion: p.nvmlVersion,
      cudaDriverVersion: p.cudaDriverVersion,
      devices,
    };
  };
}
