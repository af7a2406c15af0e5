// The first job after a start is as fast as the rest: the runtime and the advertised models are
// warm before the first poll (timings live in bench/; here, the order of events).
import { describe, expect, it } from "vitest";
import { preloadOrder } from "../../src/compose.js";
import {
  capturingLogger,
  coordinatorWithReceipts,
  inferenceJob,
  minerConfig,
  startMiner,
} from "../support/harness.js";

const eventIndex = (lines: string[], event: string) =>
  lines.findIndex((l) => l.includes(`"event":"${event}"`));

describe("warm start", () => {
  it("loads the advertised models before the first poll, so no job pays for the load", async () => {
    const { coordinator } = await coordinatorWithReceipts();
    const id = coordinator.enqueue(inferenceJob(1));
    const { log, lines } = capturingLogger("info");
    const miner = await startMiner(minerConfig(coordinator.url, { logLevel: "info" }), log);
    await coordinator.waitFor((c) => c.job(id)!.state === "COMPLETED", 60_000);
    expect((await miner.stop()).code).toBe(0);
    await coordinator.close();
    const warm = eventIndex(lines, "models_warm");
    expect(warm).toBeGreaterThanOrEqual(0);
    expect(JSON.parse(lines[warm]!)).toMatchObject({ models: ["tiny"] });
    expect(eventIndex(lines, "model_loaded")).toBeLessThan(warm);
    expect(warm).toBeLessThan(eventIndex(lines, "job_started"));
    expect(eventIndex(lines, "registered")).toBeGreaterThanOrEqual(0);
  });

  it("--preload none leaves loading to the first job", async () => {
    const { coordinator } = await coordinatorWithReceipts();
    const id = coordinator.enqueue(inferenceJob(1));
    const { log, lines } = capturingLogger("info");
    const miner = await startMiner(minerConfig(coordinator.url, { preload: "none" }), log);
    await coordinator.waitFor((c) => c.job(id)!.state === "COMPLETED", 60_000);
    expect((await miner.stop()).code).toBe(0);
    await coordinator.close();
    expect(JSON.parse(lines[eventIndex(lines, "models_warm")]!)).toMatchObject({ models: [] });
    expect(eventIndex(lines, "job_started")).toBeLessThan(eventIndex(lines, "model_loaded"));
  });

  it("orders preloads: all = largest first; a list keeps its order and drops what is not served", () => {
    const models = [
      { name: "small", sizeBytes: 10, source: "" },
      { name: "big", sizeBytes: 1000, source: "" },
      { name: "mid", sizeBytes: null, source: "" },
    ];
    expect(preloadOrder("all", models)).toEqual(["big", "small", "mid"]);
    expect(preloadOrder("none", models)).toEqual([]);
    expect(preloadOrder("mid, nope,small", models)).toEqual(["mid", "small"]);
  });
});
