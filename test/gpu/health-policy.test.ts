// The health policy (docs/gpu-health.md) as a pure function, and the monitor's bookkeeping fed
// with snapshots and events by hand.
import { describe, expect, it } from "vitest";
import type { NvmlEvent } from "../../binding.js";
import { emptyExtra, type GpuExtra } from "../../src/gpu/extra.js";
import { GpuHealthMonitor } from "../../src/gpu/health-monitor.js";
import {
  APPLICATION_XIDS,
  classifyXid,
  evaluateHealth,
  type HealthVerdict,
  sameVerdict,
} from "../../src/gpu/health-policy.js";
import type { GpuDevice, GpuSnapshot } from "../../src/gpu/types.js";
import { silentLogger } from "../../src/log.js";

function device(index: number, extra: Partial<GpuExtra> = {}, error: GpuDevice["error"] = null): GpuDevice {
  return {
    index,
    uuid: `GPU-${index}`,
    name: "test GPU",
    pciBusId: null,
    memoryTotalMiB: 1000,
    memoryUsedMiB: 0,
    memoryFreeMiB: 1000,
    utilizationGpuPct: 0,
    utilizationMemoryPct: 0,
    temperatureC: 40,
    powerDrawW: 100,
    powerLimitW: 700,
    computeCapability: "9.0",
    processes: [],
    extra: { ...emptyExtra(), ...extra } as unknown as Record<string, unknown>,
    error,
  };
}

function snapshot(devices: GpuDevice[]): GpuSnapshot {
  return {
    source: "nvml",
    reason: null,
    driverVersion: null,
    cudaDriverVersion: null,
    devices,
    takenAt: 0,
  };
}

const verdict = (d: GpuDevice, over: Partial<Parameters<typeof evaluateHealth>[0]> = {}) =>
  evaluateHealth({
    device: d,
    conditions: [],
    slowdown: null,
    drained: false,
    now: 0,
    sustainMs: 60_000,
    ...over,
  });

type EventOf = Extract<NvmlEvent, { kind: "event" }>;
const xid = (n: number, index: number | null = 0, uuid: string | null = `GPU-${index}`): EventOf => ({
  kind: "event",
  index,
  uuid,
  type: "xid",
  eventType: 8,
  xid: n,
  data: n,
  timestamp: 1_700_000_000_000,
});

describe("the Xid table", () => {
  it("leaves the application Xids NVIDIA's device plugin skips healthy", () => {
    expect([...APPLICATION_XIDS].sort((a, b) => a - b)).toEqual([13, 31, 43, 45, 68, 109]);
    for (const n of APPLICATION_XIDS) expect(classifyXid(n)).toBe("application");
  });

  it("makes hardware Xids sick, 79 lost, and an unknown Xid sick; an operator may add application Xids", () => {
    for (const n of [48, 63, 64, 74, 92, 94, 95]) expect(classifyXid(n)).toBe("sick");
    expect(classifyXid(79)).toBe("lost");
    expect(classifyXid(12345)).toBe("sick");
    expect(classifyXid(8, [8])).toBe("application");
  });
});

describe("evaluateHealth", () => {
  it("a plain device is healthy and takes jobs", () => {
    expect(verdict(device(0))).toEqual({
      index: 0,
      uuid: "GPU-0",
      state: "healthy",
      drained: false,
      takesJobs: true,
      reasons: [],
    });
  });

  it("unsupported (null) counters are no reason; set ones each make a reason", () => {
    const all = verdict(
      device(0, {
        retiredPagesPending: true,
        remapPending: true,
        remapFailure: true,
        eccUncorrectedVolatile: 2,
      }),
    );
    expect(all.state).toBe("sick");
    expect(all.reasons.map((r) => r.code)).toEqual([
      "row_remap_failure",
      "row_remap_pending",
      "retired_pages_pending",
      "uncorrected_ecc",
    ]);
    const zero = verdict(
      device(0, { retiredPagesPending: false, remapFailure: false, eccUncorrectedVolatile: 0 }),
    );
    expect(zero.state).toBe("healthy");
  });

  it("GPU_IS_LOST is lost; another unreadable device is sick", () => {
    const lost = verdict(device(1, {}, { code: 15, message: "GPU is lost" }));
    expect(lost).toMatchObject({ state: "lost", takesJobs: false });
    expect(lost.reasons[0]!.code).toBe("gpu_lost");
    expect(verdict(device(1, {}, { code: 999, message: "Unknown Error" })).state).toBe("sick");
  });

  it("a lost condition outranks a sick one", () => {
    const v = verdict(device(0, { retiredPagesPending: true }), {
      conditions: [{ code: "xid_79", severity: "lost", message: "", since: null }],
    });
    expect(v.state).toBe("lost");
  });

  it("a hardware slowdown is listed once it has lasted sustainMs, as a warning only", () => {
    const d = device(0);
    expect(verdict(d, { slowdown: { since: 0, reasons: ["hw_slowdown"] }, now: 59_999 }).reasons).toEqual([]);
    const v = verdict(d, { slowdown: { since: 0, reasons: ["hw_slowdown"] }, now: 60_000 });
    expect(v).toMatchObject({ state: "healthy", takesJobs: true });
    expect(v.reasons[0]).toMatchObject({ code: "sustained_slowdown", severity: "warning" });
  });

  it("a drained GPU stays healthy but takes no job", () => {
    expect(verdict(device(0), { drained: true })).toMatchObject({
      state: "healthy",
      drained: true,
      takesJobs: false,
    });
  });
});

describe("GpuHealthMonitor bookkeeping", () => {
  function monitor(now = () => 0) {
    const changes: [string, HealthVerdict][] = [];
    const m = new GpuHealthMonitor({
      source: {
        kind: "none",
        reason: null,
        snapshot: () => Promise.reject(new Error("unused")),
        close: async () => {},
      },
      log: silentLogger(),
      intervalMs: null,
      watchEvents: null,
      now,
    });
    m.onHealthChange((u, v) => changes.push([u, v]));
    return { m, changes };
  }

  it("reports each GPU's first verdict and then only changes", () => {
    const { m, changes } = monitor();
    m.observe(snapshot([device(0), device(1)]));
    m.observe(snapshot([device(0), device(1)]));
    expect(changes.map(([u, v]) => [u, v.state])).toEqual([
      ["GPU-0", "healthy"],
      ["GPU-1", "healthy"],
    ]);
    m.observe(snapshot([device(0), device(1, { remapFailure: true })]));
    expect(changes.map(([u, v]) => [u, v.state]).slice(2)).toEqual([["GPU-1", "sick"]]);
  });

  it("keeps an event's condition across reads until clear(uuid)", () => {
    const { m } = monitor();
    m.observe(snapshot([device(0)]));
    m.handleEvent(xid(48));
    m.observe(snapshot([device(0)]));
    expect(m.verdict("GPU-0")?.reasons[0]).toMatchObject({
      code: "xid_48",
      since: "2023-11-14T22:13:20.000Z",
    });
    m.clear("GPU-0");
    expect(m.verdict("GPU-0")?.state).toBe("healthy");
  });

  it("an event for a GPU not read yet counts from its first read; by index when NVML gave no UUID", () => {
    const { m } = monitor();
    m.handleEvent(xid(95, 1, "GPU-1"));
    m.observe(snapshot([device(0), device(1)]));
    expect(m.verdicts().map((v) => v.state)).toEqual(["healthy", "sick"]);
    m.handleEvent(xid(74, 0, null));
    expect(m.verdict("GPU-0")?.reasons.map((r) => r.code)).toEqual(["xid_74"]);
  });

  it("an Xid NVML cannot attribute to a GPU counts against every GPU, as the device plugin does", () => {
    const { m } = monitor();
    m.observe(snapshot([device(0), device(1)]));
    m.handleEvent(xid(64, null, null));
    expect(m.verdicts().map((v) => v.state)).toEqual(["sick", "sick"]);
  });

  it("ignores application Xids and single-bit ECC events; a failed wait changes no verdict", () => {
    const { m, changes } = monitor();
    m.observe(snapshot([device(0)]));
    m.handleEvent(xid(13));
    m.handleEvent({ ...xid(0), type: "single_bit_ecc", eventType: 1, xid: null });
    m.handleEvent({ kind: "error", code: 15, message: "GPU is lost", timestamp: 0 });
    expect(changes).toHaveLength(1);
    expect(m.verdict("GPU-0")?.state).toBe("healthy");
  });

  it("tracks a slowdown across reads and drops it when a read shows the clocks free", () => {
    let now = 0;
    const { m } = monitor(() => now);
    const slow = () => device(0, { clockEventReasons: ["sw_power_cap", "hw_thermal_slowdown"] });
    m.observe(snapshot([slow()]));
    now = 30_000;
    m.observe(snapshot([slow()]));
    expect(m.verdict("GPU-0")?.reasons).toEqual([]);
    now = 61_000;
    m.observe(snapshot([slow()]));
    expect(m.verdict("GPU-0")?.reasons[0]?.message).toBe("clocks held down by hw_thermal_slowdown for 61 s");
    m.observe(snapshot([device(0, { clockEventReasons: ["sw_power_cap"] })]));
    expect(m.verdict("GPU-0")?.reasons).toEqual([]);
  });

  it("drains by UUID or index and re-evaluates when the list changes", () => {
    const { m, changes } = monitor();
    m.observe(snapshot([device(0), device(1)]));
    m.setDrained(["1"]);
    expect(changes.at(-1)).toEqual(["GPU-1", expect.objectContaining({ drained: true, takesJobs: false })]);
    m.setDrained(["GPU-0"]);
    expect(m.verdicts().map((v) => v.drained)).toEqual([true, false]);
  });

  it("a listener that throws does not stop the others", () => {
    const { m } = monitor();
    m.onHealthChange(() => {
      throw new Error("listener bug");
    });
    const after: string[] = [];
    m.onHealthChange((u) => after.push(u));
    m.observe(snapshot([device(0)]));
    expect(after).toEqual(["GPU-0"]);
  });

  it("sameVerdict compares what a consumer acts on", () => {
    const a = verdict(device(0, { remapPending: true }));
    const b = verdict(device(0, { remapPending: true }));
    expect(sameVerdict(a, b)).toBe(true);
    expect(sameVerdict(undefined, b)).toBe(false);
    expect(sameVerdict(a, verdict(device(0)))).toBe(false);
  });
});
