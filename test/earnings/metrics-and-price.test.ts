// The earnings counters per worker as a multi-GPU host's supervisor keeps them (events that crossed
// the worker IPC, validated there), and the --price setting: default, sources, bad values.
import { describe, expect, it } from "vitest";
import { ConfigError, resolveRunConfig } from "../../src/config.js";
import { earnedBy } from "../../src/earnings/earned.js";
import { parseWorkerMessage } from "../../src/fleet/ipc.js";
import { OpsMetrics } from "../../src/ops/metrics.js";
import { parseJsonLossless } from "../../src/receipts/index.js";
import { modelsDir } from "../support/harness.js";

function series(text: string, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = line.match(new RegExp(`^${name}\\{(.*)\\} (\\S+)$`));
    if (m) out.set(/gpu="([^"]*)"/.exec(m[1]!)![1]!, Number(m[2]));
  }
  return out;
}

describe("earnings in /metrics", () => {
  it("counts units and amount per worker from accepted results that crossed the worker IPC", async () => {
    const metrics = new OpsMetrics();
    metrics.addWorker("w0", { gpu: "0", uuid: "GPU-aaaa", miner_id: "box-gpu0" });
    metrics.addWorker("w1", { gpu: "1", uuid: "GPU-bbbb", miner_id: "box-gpu1" });
    // The coordinator's signed figures win over what was asked; without a receipt, units x price.
    const signed = parseJsonLossless('{"units":2.0,"unit_price":0.05,"price":0.1}');
    const deliveries: [string, unknown][] = [
      ["w0", earnedBy({ units: 2, unitType: "gpu_seconds", unitPrice: 0.05 }, signed)],
      ["w0", earnedBy({ units: 1.5, unitType: "gpu_seconds", unitPrice: 0.05 }, null)],
      ["w1", earnedBy({ units: 4, unitType: "gpu_seconds", unitPrice: 0.02 }, null)],
      // The claim dialect sends no price: units only.
      ["w1", earnedBy({ units: 1, unitType: "gpu_seconds", unitPrice: null }, null)],
    ];
    for (const [key, earned] of deliveries) {
      const msg = parseWorkerMessage(
        JSON.parse(
          JSON.stringify({
            t: "event",
            e: { type: "result_delivered", answer: "accepted", ...(earned as object) },
          }),
        ),
      );
      expect(msg?.t).toBe("event");
      if (msg?.t === "event") metrics.observe(key, msg.e);
    }
    // A forged amount is refused at the IPC boundary, not counted.
    expect(
      parseWorkerMessage({ t: "event", e: { type: "result_delivered", answer: "accepted", amount: -1 } }),
    ).toBeNull();
    const text = await metrics.metrics();
    const units = series(text, "aitbc_miner_earned_units_total");
    const amount = series(text, "aitbc_miner_earnings_total");
    expect(units.get("0")).toBeCloseTo(3.5, 9);
    expect(units.get("1")).toBeCloseTo(5, 9);
    expect(amount.get("0")).toBeCloseTo(0.175, 9);
    expect(amount.get("1")).toBeCloseTo(0.08, 9);
    expect(text).toMatch(/aitbc_miner_earnings_total\{gpu="0",UUID="GPU-aaaa",miner_id="box-gpu0"\}/);
  });
});

describe("--price", () => {
  const base = { coordinator: "http://127.0.0.1:1", apiKey: "k", models: modelsDir };
  it("defaults to upstream's 0.02 and takes a flag, the environment or the config file", () => {
    expect(resolveRunConfig({ flags: base, env: {} }).price).toBe(0.02);
    expect(resolveRunConfig({ flags: { ...base, price: "0.05" }, env: {} }).price).toBe(0.05);
    expect(resolveRunConfig({ flags: base, env: { AITBC_PRICE: "0.125" } }).price).toBe(0.125);
  });
  it.each(["-1", "abc", "1e3", "2000000", "0x10"])("refuses %s with a line naming --price", (v) => {
    expect(() => resolveRunConfig({ flags: { ...base, price: v }, env: {} })).toThrow(ConfigError);
    expect(() => resolveRunConfig({ flags: { ...base, price: v }, env: {} })).toThrow(/^--price: /);
  });
});
