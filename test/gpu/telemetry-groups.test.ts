// `telemetry --json`'s nested groups (clocks, ecc, pcie) are derived from one table
// (telemetry-schema.ts GROUPS): each documented key must carry its own fact. Every fact gets a
// distinct value here, so a key wired to the wrong fact, or a fact left out, fails.
import { describe, expect, it } from "vitest";
import { toTelemetryJson } from "../../src/gpu/telemetry-format.js";
import { telemetryJsonSchema } from "../../src/gpu/telemetry-schema.js";
import type { GpuDevice } from "../../src/gpu/types.js";

const device: GpuDevice = {
  index: 0,
  uuid: "GPU-0",
  name: "Test",
  pciBusId: "00000000:01:00.0",
  memoryTotalMiB: 80,
  memoryUsedMiB: 8,
  memoryFreeMiB: 72,
  utilizationGpuPct: 50,
  utilizationMemoryPct: 40,
  temperatureC: 60,
  powerDrawW: 300,
  powerLimitW: 700,
  computeCapability: "9.0",
  processes: [],
  extra: {
    smClockMHz: 1,
    memClockMHz: 2,
    smClockMaxMHz: 3,
    memClockMaxMHz: 4,
    eccUncorrectedVolatile: 5,
    remappedRowsCorrectable: 6,
    remappedRowsUncorrectable: 7,
    pcieLinkGen: 8,
    pcieLinkWidth: 9,
    pcieLinkGenMax: 10,
    pcieLinkWidthMax: 11,
    pcieTxKBs: 12,
    pcieRxKBs: 13,
    fanPct: 14,
    totalEnergyMj: 15,
    pstate: 2,
    eccModeCurrent: true,
    eccModePending: false,
    retiredPagesPending: true,
    remapPending: false,
    remapFailure: true,
  },
};

describe("telemetry --json groups", () => {
  it("puts each fact under its documented key, and nothing else there", () => {
    const doc = toTelemetryJson({
      source: "nvml",
      reason: null,
      driverVersion: "580.1",
      cudaDriverVersion: "13.0",
      devices: [device],
      takenAt: 0,
    });
    const gpu = telemetryJsonSchema.parse(doc).gpus[0]!;
    expect(gpu.clocks).toEqual({ smMHz: 1, memMHz: 2, smMaxMHz: 3, memMaxMHz: 4 });
    expect(gpu.ecc).toEqual({
      enabled: true,
      pendingEnabled: false,
      uncorrectedVolatile: 5,
      retiredPagesPending: true,
      remappedRows: { correctable: 6, uncorrectable: 7, pending: false, failure: true },
    });
    expect(gpu.pcie).toEqual({ gen: 8, width: 9, genMax: 10, widthMax: 11, txKBs: 12, rxKBs: 13 });
    expect([gpu.fanPct, gpu.totalEnergyMj, gpu.pstate]).toEqual([14, 15, "P2"]);
  });

  it("a flag key refuses a number and a number key a flag (the schema reads each fact's kind)", () => {
    const doc = toTelemetryJson({
      source: "nvml",
      reason: null,
      driverVersion: null,
      cudaDriverVersion: null,
      devices: [device],
      takenAt: 0,
    });
    const bad = structuredClone(doc);
    (bad.gpus[0]!.ecc as Record<string, unknown>)["enabled"] = 1;
    expect(telemetryJsonSchema.safeParse(bad).success).toBe(false);
    const bad2 = structuredClone(doc);
    (bad2.gpus[0]!.pcie as Record<string, unknown>)["gen"] = true;
    expect(telemetryJsonSchema.safeParse(bad2).success).toBe(false);
  });
});
