// The real N-API path in child processes: long runs, lost GPUs, the telemetry command.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { fakeDevice } from "../fake-nvml/config.js";
import { configFile, fake, root, runNode, tmp } from "../support/gpu.js";

const MB = 1024 * 1024;
const env = (cfg: string) => ({
  FAKE_NVML_CONFIG: cfg,
  AITBC_NVML_ADDON: `${root}/build/Release/aitbc_nvml.node`,
});

describe("NVML addon in a child process", () => {
  it("takes 10 000 snapshots of 8 GPUs without crashing or growing", async () => {
    const cfg = configFile({
      devices: Array.from({ length: 8 }, (_, i) =>
        fakeDevice(i, { processes: Array.from({ length: 4 }, (_, p) => ({ pid: 1000 + p, usedMiB: 100 })) }),
      ),
    });
    const r = await runNode(
      ["--expose-gc", "test/gpu/fixtures/snapshot-loop.mjs", fake.current, "10000"],
      env(cfg),
      120_000,
    );
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { before: number; after: number; devices: number };
    expect(out.devices).toBe(80_000);
    // Growth, not time: a leak of even 2 KiB per snapshot would exceed this.
    expect(out.after - out.before).toBeLessThan(20 * MB);
  });

  it("survives a GPU lost mid-run: the device is flagged, the others keep reading", async () => {
    const cfg = configFile({
      devices: [fakeDevice(0), fakeDevice(1, { lostAfter: 60 })],
      countError: { code: 999, after: 5, times: 1 },
    });
    const r = await runNode(["test/gpu/fixtures/lost-gpu.mjs", fake.current], env(cfg));
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { seen: (string[] | string)[]; alive: boolean };
    expect(out.alive).toBe(true);
    expect(out.seen[0]).toEqual(["ok:81559", "ok:81559"]);
    // The sixth snapshot fails as a whole (NVML code carried), the next ones work again.
    expect(out.seen[5]).toBe("error:999");
    expect(out.seen[7]).toEqual(["ok:81559", "lost:15"]);
  });
});

describe("slow and unsupported NVML fields (what a real H200 driver showed)", () => {
  it("asks an unsupported field once, static facts once, and settings at most every 30 s", async () => {
    const cfg = configFile({ devices: [fakeDevice(0, { unsupported: ["fan"] })] });
    const log = `${tmp}/calls-${process.pid}.log`;
    const r = await runNode(["test/gpu/fixtures/call-count.mjs", fake.current, "12"], {
      ...env(cfg),
      FAKE_NVML_CALL_LOG: log,
    });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const calls = readFileSync(log, "utf8").trim().split("\n");
    const count = (g: string) => calls.filter((c) => c === g).length;
    expect(count("temperature")).toBe(12); // live values: every snapshot
    expect(count("fan")).toBe(1); // NOT_SUPPORTED once: never asked again
    expect(count("max_clocks")).toBe(2); // SM and memory, once each
    expect(count("cc")).toBe(1);
    expect(count("energy")).toBe(1); // a 5 s counter: one read in this short run
    expect(count("power_limit")).toBe(1); // an admin setting: every 30 s
    // Memoised values are the ones the device gave, not nulls.
    const out = JSON.parse(r.stdout) as { first: Record<string, unknown>; last: Record<string, unknown> };
    expect(out.last).toEqual(out.first);
    expect(out.last["powerLimitW"]).toBe(700);
  });
});
