// The supervisor's side of draining and alerting, in process: HostDrain on a real GpuHealthMonitor
// over the fake NVML (Xids fed as the addon delivers them), and HostWatch's alerts to a loopback
// webhook with a clock the test moves.
import { afterEach, describe, expect, it } from "vitest";
import type { NvmlEvent } from "../../binding.js";
import { type DrainState, HostDrain } from "../../src/fleet/gpu-drain.js";
import { HostWatch } from "../../src/fleet/host-watch.js";
import { createGpuInfoSource, GpuHealthMonitor } from "../../src/gpu/index.js";
import type { GpuInfoSource } from "../../src/gpu/types.js";
import { silentLogger } from "../../src/log.js";
import { fakeDevice } from "../fake-nvml/config.js";
import { fake, useFakeConfig } from "../support/gpu.js";
import { eventually } from "../support/health.js";
import { startWebhook, type Webhook } from "../support/webhook.js";

const log = silentLogger();
let src: GpuInfoSource | null = null;
let hook: Webhook | null = null;
let watch: HostWatch | null = null;
afterEach(async () => {
  await watch?.close();
  await src?.close();
  await hook?.close();
  watch = null;
  src = null;
  hook = null;
});

const uuid = (i: number) => fakeDevice(i).uuid!;
const xid = (index: number, x: number): NvmlEvent => ({
  kind: "event",
  index,
  uuid: uuid(index),
  type: "xid",
  eventType: 8,
  xid: x,
  data: x,
  timestamp: Date.now(),
});

async function host(cards: number) {
  useFakeConfig({
    driver: "550.54.15",
    cuda: 12040,
    devices: Array.from({ length: cards }, (_, i) => fakeDevice(i)),
  });
  src = await createGpuInfoSource({ nvmlLibrary: fake.current, log, nvidiaSmi: "/nonexistent/nvidia-smi" });
  const monitor = new GpuHealthMonitor({ source: src, log, intervalMs: null, watchEvents: null });
  const changes: [string, DrainState | null][] = [];
  const targets = Array.from({ length: cards }, (_, i) => ({
    key: `w${i}`,
    minerId: `rig-gpu${i}`,
    indexes: [i],
    uuids: [uuid(i)],
  }));
  const drain = new HostDrain(monitor, targets, log, (k, s) => changes.push([k, s]));
  await monitor.start();
  return { monitor, drain, changes };
}

describe("HostDrain", () => {
  it("drains the card an Xid 79 names, once; an application Xid drains nothing; undrain forgets the Xid", async () => {
    const { monitor, drain, changes } = await host(4);
    expect(changes).toEqual([]); // healthy cards at start: nothing to say
    monitor.handleEvent(xid(1, 13));
    expect(changes).toEqual([]);
    monitor.handleEvent(xid(2, 79));
    monitor.handleEvent(xid(2, 79)); // the same condition again: said once
    expect(changes).toHaveLength(1);
    const [key, state] = changes[0]!;
    expect(key).toBe("w2");
    expect(state).toMatchObject({ by: "health", failRunning: true });
    expect(state!.reason).toMatch(/^GPU 2 drained: Xid 79: /);
    expect(drain.drained().map((d) => d.minerId)).toEqual(["rig-gpu2"]);

    expect(await drain.command("undrain", uuid(2))).toEqual({
      minerId: "rig-gpu2",
      message: "rig-gpu2 takes jobs",
    });
    expect(changes.at(-1)).toEqual(["w2", null]);
    expect(drain.state("w2")).toBeNull();
  });

  it("the operator's drain lets running jobs finish; IDs by index, miner id or UUID; unknown ID is a 404", async () => {
    const { drain, changes } = await host(2);
    const r = await drain.command("drain", "rig-gpu1");
    expect(r).toEqual({ minerId: "rig-gpu1", message: "rig-gpu1 is drained: GPU 1 drained by the operator" });
    expect(changes).toEqual([["w1", expect.objectContaining({ by: "operator", failRunning: false })]]);
    expect(drain.verdicts().map((v) => [v.index, v.drained])).toEqual([
      [0, false],
      [1, true],
    ]);
    await drain.command("undrain", "1");
    expect(changes.at(-1)).toEqual(["w1", null]);
    await expect(drain.command("drain", "7")).rejects.toMatchObject({ status: 404 });
  });
});

describe("HostWatch alerts", () => {
  it("drained and back, crash loop, state full, no jobs while polls succeed, credentials: once each", async () => {
    hook = await startWebhook();
    let now = 1_000_000;
    watch = new HostWatch({
      log,
      alertWebhook: hook.url,
      noJobMs: 30 * 60_000,
      now: () => now,
      workers: [0, 1, 2].map((i) => ({ key: `w${i}`, minerId: `rig-gpu${i}`, gpus: String(i) })),
    });
    const texts = async (n: number) => {
      await eventually(`${n} alerts`, () => hook!.bodies.length >= n);
      return hook!.bodies.map((b) => String(b["text"]));
    };
    const state: DrainState = {
      reason: "GPU 2 drained: Xid 79: x",
      by: "health",
      failRunning: true,
      since: "",
    };
    watch.drainChanged("w2", state);
    watch.drainChanged("w2", null);
    expect((await texts(2)).map((t) => t.replace(/^[^:]+: /, ""))).toEqual([
      "rig-gpu2: GPU 2 drained: Xid 79: x; its other work goes on",
      "rig-gpu2: GPU 2 takes jobs again",
    ]);

    for (let i = 0; i < 4; i++) watch.exited("w0", 1, false);
    const gauges = {
      inflight: 0,
      pendingSubmissions: 0,
      outboxFiles: 0,
      registered: true,
      servableModels: 1,
    };
    const health = { live: true, ready: true, reasons: [] };
    watch.status("w1", { ...gauges, stateWritable: false }, health);
    watch.status("w1", { ...gauges, stateWritable: false }, health);
    const after = await texts(4);
    expect(after.filter((t) => t.includes("crash loop"))).toHaveLength(1);
    expect(after.filter((t) => t.includes("state directory is full"))).toHaveLength(1);

    // Half an hour of empty polls on w0 (w1's state is full, w2 gets jobs): one nojob alert.
    for (let m = 0; m <= 31; m++) {
      now += 60_000;
      watch.event("w0", { type: "poll", result: "empty" });
      watch.event("w2", { type: "poll", result: m % 5 === 0 ? "job" : "empty" });
    }
    watch.check();
    watch.check();
    const nojob = (await texts(5)).filter((t) => t.includes("no job for 30 min"));
    expect(nojob).toHaveLength(1);
    expect(nojob[0]).toContain("rig-gpu0");

    watch.status(
      "w2",
      { ...gauges, stateWritable: true },
      {
        live: false,
        ready: false,
        reasons: ["fatal: the coordinator refused our credentials (HTTP 401) while polling: check …"],
      },
    );
    watch.exited("w2", 2, true);
    expect((await texts(6)).at(-1)).toContain("rig-gpu2: the coordinator refuses our credentials");

    const report = watch.report();
    const [v0, v1, v2] = report.workers.map((w) => w.verdict);
    expect(v0).toMatch(/^the coordinator had no work for your models in \d+ polls$/);
    expect(v1).toBe("state directory full or read-only: mining paused until it takes writes");
    expect(v2).toBe("the coordinator refuses our credentials (check --api-key-file and --miner-id)");
    expect(hook.bodies).toHaveLength(6);
  });
});
