// GPU health through the real addon (N-API, dlopen, the event thread) over the fake NVML, in this
// process: events reach JavaScript, the policy classifies them, counters and lost GPUs.
import { afterEach, describe, expect, it } from "vitest";
import type { NvmlEvent } from "../../binding.js";
import { createGpuInfoSource, GpuHealthMonitor, type HealthVerdict, loadAddon } from "../../src/gpu/index.js";
import type { NvmlGpuSource } from "../../src/gpu/nvml-source.js";
import { silentLogger } from "../../src/log.js";
import {
  appendFakeEvents,
  EVENT_DOUBLE_BIT_ECC,
  EVENT_SINGLE_BIT_ECC,
  EVENT_XID,
  fakeDevice,
} from "../fake-nvml/config.js";
import { fake, useFakeConfig } from "../support/gpu.js";
import { eventually, fakeWithEvents } from "../support/health.js";

const log = silentLogger();
let src: NvmlGpuSource | null = null;
let monitor: GpuHealthMonitor | null = null;

afterEach(async () => {
  await monitor?.stop();
  monitor = null;
  await src?.close();
  src = null;
});

async function open(library = fake.current): Promise<NvmlGpuSource> {
  const s = await createGpuInfoSource({ nvmlLibrary: library, log, nvidiaSmi: "/nonexistent/nvidia-smi" });
  expect(s.kind).toBe("nvml");
  src = s as NvmlGpuSource;
  return src;
}

/** A started monitor (events + one counter read, no timer) and every change it reports. */
async function watched(
  s: NvmlGpuSource,
): Promise<{ m: GpuHealthMonitor; changes: [string, HealthVerdict][] }> {
  const changes: [string, HealthVerdict][] = [];
  monitor = new GpuHealthMonitor({ source: s, log, intervalMs: null });
  monitor.onHealthChange((uuid, v) => changes.push([uuid, v]));
  await monitor.start();
  return { m: monitor, changes };
}

const uuid = (i: number) => fakeDevice(i).uuid!;

describe("NVML health events through the addon", () => {
  it("delivers Xid 79 on GPU 2 of 4 to JavaScript with its GPU, and the verdict says lost", async () => {
    const file = fakeWithEvents(4);
    const s = await open();
    const got: NvmlEvent[] = [];
    const watch = s.watchEvents((e) => got.push(e))!;
    expect(watch.status.running).toBe(true);
    expect(watch.status.waitCall).toBe("nvmlEventSetWait_v2");
    expect(watch.status.devices.map((d) => [d.index, d.uuid, d.status])).toEqual(
      [0, 1, 2, 3].map((i) => [i, uuid(i), "registered"]),
    );
    expect(watch.status.devices[0]!.eventTypes).toEqual(["xid", "double_bit_ecc", "single_bit_ecc"]);
    const before = Date.now();
    appendFakeEvents(file, [{ index: 2, type: EVENT_XID, data: 79 }]);
    const e = await eventually("the Xid event", () => got[0]);
    watch.stop();
    expect(e).toMatchObject({ kind: "event", index: 2, uuid: uuid(2), type: "xid", xid: 79, data: 79 });
    expect(e.timestamp).toBeGreaterThanOrEqual(before - 1000);
    expect(e.timestamp).toBeLessThanOrEqual(Date.now() + 1000);
    expect(got).toHaveLength(1);

    const { m, changes } = await watched(s);
    appendFakeEvents(file, [{ index: 2, type: EVENT_XID, data: 79 }]);
    const lost = await eventually("GPU 2 lost", () =>
      changes.find(([u, v]) => u === uuid(2) && v.state === "lost"),
    );
    expect(lost[1].reasons.map((r) => r.code)).toEqual(["xid_79"]);
    expect(lost[1].takesJobs).toBe(false);
    for (const i of [0, 1, 3]) expect(m.verdict(uuid(i))?.state).toBe("healthy");
  });

  it("keeps a GPU healthy through an application Xid (13) and a single-bit ECC event; Xid 48 and a double-bit ECC event make theirs sick", async () => {
    const file = fakeWithEvents(3);
    const { m, changes } = await watched(await open());
    // Delivered in order: once GPU 2's verdict changes, GPU 0's events were all handled.
    appendFakeEvents(file, [
      { index: 0, type: EVENT_XID, data: 13 },
      { index: 0, type: EVENT_SINGLE_BIT_ECC },
      { index: 1, type: EVENT_DOUBLE_BIT_ECC },
      { index: 2, type: EVENT_XID, data: 48 },
    ]);
    await eventually("GPU 2 sick", () => m.verdict(uuid(2))?.state === "sick");
    expect(m.verdict(uuid(0))).toMatchObject({ state: "healthy", reasons: [] });
    expect(m.verdict(uuid(1))?.reasons.map((r) => r.code)).toEqual(["double_bit_ecc"]);
    expect(m.verdict(uuid(2))?.reasons.map((r) => r.code)).toEqual(["xid_48"]);
    // Only the first verdicts and the two sick ones were reported.
    expect(changes.filter(([u]) => u === uuid(0))).toHaveLength(1);
  });

  it("reports devices without events as unsupported and still watches the others", async () => {
    // GPU 1 answers NOT_SUPPORTED; GPU 2 supports only P-state events, none of the health ones.
    const file = fakeWithEvents(3, { 1: { unsupported: ["events"] }, 2: { eventTypes: 0x4 } });
    const s = await open();
    const got: NvmlEvent[] = [];
    const watch = s.watchEvents((e) => got.push(e))!;
    expect(watch.status.running).toBe(true);
    expect(watch.status.devices.map((d) => [d.status, d.code])).toEqual([
      ["registered", null],
      ["unsupported", 3],
      ["unsupported", 3],
    ]);
    expect(watch.status.devices[1]!.message).toBe("Not Supported");
    appendFakeEvents(file, [
      { index: 1, type: EVENT_XID, data: 48 },
      { index: 2, type: EVENT_XID, data: 48 },
      { index: 0, type: EVENT_XID, data: 31 },
    ]);
    await eventually("GPU 0's event", () => got.length > 0);
    watch.stop();
    expect(got.map((e) => (e.kind === "event" ? [e.index, e.xid] : e.kind))).toEqual([[0, 31]]);
  });

  it("starts no thread when no GPU supports events, and says why", async () => {
    fakeWithEvents(2, { 0: { unsupported: ["events"] }, 1: { unsupported: ["events"] } });
    const s = await open();
    const watch = s.watchEvents(() => {})!;
    expect(watch.status).toMatchObject({ running: false, reason: "no GPU supports NVML events" });
    expect(watch.status.devices.map((d) => d.status)).toEqual(["unsupported", "unsupported"]);
    const loaded = loadAddon();
    expect(loaded.ok && loaded.addon.eventsRunning?.()).toBe(false);
  });

  it("reports a failing wait once and keeps delivering events after it", async () => {
    const file = fakeWithEvents(2);
    const s = await open();
    const got: NvmlEvent[] = [];
    const watch = s.watchEvents((e) => got.push(e))!;
    appendFakeEvents(file, [{ error: 15 }, { index: 1, type: EVENT_XID, data: 94 }]);
    await eventually("the event after the error", () => got.length >= 2);
    watch.stop();
    expect(got[0]).toMatchObject({ kind: "error", code: 15, message: "GPU is lost" });
    expect(got[1]).toMatchObject({ kind: "event", index: 1, xid: 94 });
  });

  it("falls back to nvmlEventSetWait on an old driver; its missing row-remap call reads as null", async () => {
    const file = fakeWithEvents(1, { 0: { retiredPagesPending: true } });
    const s = await open(fake.old);
    const got: NvmlEvent[] = [];
    const watch = s.watchEvents((e) => got.push(e))!;
    expect(watch.status.waitCall).toBe("nvmlEventSetWait");
    appendFakeEvents(file, [{ index: 0, type: EVENT_XID, data: 63 }]);
    await eventually("the event", () => got[0]);
    watch.stop();
    expect(got[0]).toMatchObject({ index: 0, xid: 63 });
    const x = (await s.snapshot()).devices[0]!.extra!;
    expect(x["retiredPagesPending"]).toBe(true);
    expect([x["remapPending"], x["remapFailure"], x["remappedRowsUncorrectable"]]).toEqual([
      null,
      null,
      null,
    ]);
  });

  it("stops and starts again; only events after the new start arrive; a second stop is a no-op", async () => {
    const file = fakeWithEvents(1);
    const s = await open();
    const addon = loadAddon();
    if (!addon.ok) throw new Error(addon.reason);
    const first = s.watchEvents(() => {})!;
    expect(addon.addon.eventsRunning?.()).toBe(true);
    expect(() => s.watchEvents(() => {})).toThrow(/already watched/);
    first.stop();
    expect(addon.addon.eventsRunning?.()).toBe(false);
    expect(addon.addon.stopEvents?.()).toBe(false);
    appendFakeEvents(file, [{ index: 0, type: EVENT_XID, data: 61 }]);
    const got: NvmlEvent[] = [];
    const second = s.watchEvents((e) => got.push(e))!;
    appendFakeEvents(file, [{ index: 0, type: EVENT_XID, data: 62 }]);
    await eventually("the second watcher's event", () => got[0]);
    second.stop();
    expect(got.map((e) => e.kind === "event" && e.xid)).toEqual([62]);
  });

  it("holds NVML open for itself: closing every source (and a close() too many) leaves events flowing", async () => {
    const file = fakeWithEvents(2);
    const s = await open();
    const loaded = loadAddon();
    if (!loaded.ok) throw new Error(loaded.reason);
    const got: NvmlEvent[] = [];
    const watch = s.watchEvents((e) => got.push(e))!;
    await s.close();
    loaded.addon.close();
    expect(loaded.addon.isOpen()).toBe(true);
    appendFakeEvents(file, [{ index: 1, type: EVENT_XID, data: 119 }]);
    await eventually("the event after close", () => got[0]);
    watch.stop();
    expect(loaded.addon.isOpen()).toBe(false);
  });

  it("refuses to watch before NVML is open", () => {
    const loaded = loadAddon();
    if (!loaded.ok) throw new Error(loaded.reason);
    expect(loaded.addon.isOpen()).toBe(false);
    expect(() => loaded.addon.startEvents?.(() => {})).toThrow(
      expect.objectContaining({ name: "NvmlError", code: 1 }),
    );
  });
});

describe("GPU health counters through the addon", () => {
  it("a lost GPU is a lost verdict and does not break the other GPUs' snapshot or events", async () => {
    const file = fakeWithEvents(4, { 1: { lostAfter: 0 } });
    const s = await open();
    const { m } = await watched(s);
    expect(m.eventStatus?.devices.map((d) => d.status)).toEqual([
      "registered",
      "lost",
      "registered",
      "registered",
    ]);
    const snap = await s.snapshot();
    expect(snap.devices.map((d) => d.error?.code ?? null)).toEqual([null, 15, null, null]);
    expect(snap.devices[2]!.memoryTotalMiB).toBe(81559);
    expect(m.verdicts().map((v) => v.state)).toEqual(["healthy", "lost", "healthy", "healthy"]);
    expect(m.verdicts()[1]!.reasons[0]).toMatchObject({ code: "gpu_lost", severity: "lost" });
    appendFakeEvents(file, [{ index: 3, type: EVENT_XID, data: 74 }]);
    await eventually("GPU 3 sick", () => m.verdict(uuid(3))?.state === "sick");
  });

  it("re-reads on its own: a GPU lost mid-run turns lost without anyone feeding the monitor", async () => {
    // GPU 1 answers a few snapshots' worth of calls, then GPU_IS_LOST.
    fakeWithEvents(2, { 1: { lostAfter: 80 } });
    const s = await open();
    const changes: [string, HealthVerdict][] = [];
    monitor = new GpuHealthMonitor({ source: s, log, intervalMs: 20 });
    monitor.onHealthChange((u, v) => changes.push([u, v]));
    await monitor.start();
    expect(monitor.verdict(uuid(1))?.state).toBe("healthy");
    const lost = await eventually("GPU 1 lost", () => changes.find(([, v]) => v.state === "lost"));
    expect(lost[0]).toBe(uuid(1));
    expect(monitor.verdict(uuid(0))?.state).toBe("healthy");
  });

  it("reads the service counters, null where unsupported, and a verdict that clears when they clear", async () => {
    const remap = { correctable: 2, uncorrectable: 1, pending: true, failure: false };
    useFakeConfig({
      devices: [
        fakeDevice(0, { retiredPagesPending: true }),
        fakeDevice(1, { remappedRows: { ...remap, pending: false, failure: true } }),
        fakeDevice(2, { remappedRows: remap, eccUncorrected: 3 }),
        fakeDevice(3, { unsupported: ["retired_pages", "remapped_rows", "ecc_errors"] }),
      ],
    });
    let s = await open();
    const changes: [string, HealthVerdict][] = [];
    const m = new GpuHealthMonitor({ source: s, log, intervalMs: null, watchEvents: null });
    m.onHealthChange((u, v) => changes.push([u, v]));
    const snap = await s.snapshot();
    expect(snap.devices[2]!.extra).toMatchObject({
      remappedRowsCorrectable: 2,
      remappedRowsUncorrectable: 1,
      remapPending: true,
      remapFailure: false,
      eccUncorrectedVolatile: 3,
      retiredPagesPending: false,
    });
    expect(snap.devices[3]!.extra).toMatchObject({
      retiredPagesPending: null,
      remapPending: null,
      remapFailure: null,
      remappedRowsCorrectable: null,
      eccUncorrectedVolatile: null,
    });
    const codes = m.observe(snap).map((v) => [v.state, v.reasons.map((r) => r.code)]);
    expect(codes).toEqual([
      ["sick", ["retired_pages_pending"]],
      ["sick", ["row_remap_failure"]],
      ["sick", ["row_remap_pending", "uncorrected_ecc"]],
      ["healthy", []],
    ]);
    // A reset (here: the driver reloaded with the counters clear) clears the verdicts.
    await s.close();
    useFakeConfig({ devices: [0, 1, 2, 3].map((i) => fakeDevice(i)) });
    s = await open();
    expect(m.observe(await s.snapshot()).map((v) => v.state)).toEqual([
      "healthy",
      "healthy",
      "healthy",
      "healthy",
    ]);
    expect(changes.slice(4).map(([u, v]) => [u, v.state])).toEqual(
      [0, 1, 2].map((i) => [uuid(i), "healthy"]),
    );
  });
});
