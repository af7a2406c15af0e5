import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Backend, InferenceRequest, InferenceResult } from "../../src/backends/types.js";
import { Miner } from "../../src/miner/loop.js";
import { Outbox } from "../../src/miner/outbox.js";
import { coordinatorWithReceipts } from "../support/harness.js";
import { testMinerDeps } from "../support/miner-deps.js";
import { startFaultProxy } from "../support/proxy.js";

/** Serves prompt "p", hangs forever on any other and ignores the abort signal, like a wedged GPU. */
function wedgingBackend(): Backend {
  return {
    name: "llama",
    async init() {},
    listModels: () => [{ name: "m", sizeBytes: null, source: "test" }],
    hasModel: (n) => n === "m",
    generate(req: InferenceRequest): Promise<InferenceResult> {
      // By prompt, not call order: with two jobs in flight either may reach the backend first.
      if (req.prompt === "p") {
        return Promise.resolve({
          output: "done",
          model: req.model,
          backend: "llama",
          promptTokens: 1,
          completionTokens: 1,
          durationMs: 1,
          stopReason: "maxTokens",
        });
      }
      return new Promise(() => {});
    },
    async unloadAll() {},
    async close() {},
  };
}

describe("watchdog", () => {
  it("fails the wedged job, flushes the outbox first, and exits 70", async () => {
    const { coordinator } = await coordinatorWithReceipts();
    // The first result is refused twice, so it is still in the outbox when the backend wedges.
    const proxy = await startFaultProxy(coordinator.url, [{ route: /\/result$/, times: 2, status: 503 }]);
    const ok = coordinator.enqueue({ payload: { model: "m", prompt: "p" } });
    const stuck = coordinator.enqueue({ payload: { model: "m", prompt: "q" } });
    const deps = testMinerDeps({
      url: proxy.url,
      backend: wedgingBackend(),
      minerId: "wd-miner",
      concurrency: 2,
      settings: {
        jobTimeoutMs: 400,
        abortGraceMs: 300,
        flushTimeoutMs: 10_000,
        pollsPerWindow: Number.POSITIVE_INFINITY,
      },
    });
    const state = deps.stateDir;
    const miner = new Miner(deps);
    const exit = await miner.run();
    expect(exit.code).toBe(70);
    expect(exit.reason).toMatch(/wedged/);
    expect(coordinator.job(ok)!.error ?? null).toBeNull();
    expect(coordinator.job(ok)!.state).toBe("COMPLETED");
    expect(coordinator.job(stuck)!.state).toBe("FAILED");
    expect(coordinator.job(stuck)!.error?.code).toBe("timeout");
    expect(proxy.injected["503"]).toBe(2);
    expect(await new Outbox(join(state, "outbox")).depth()).toBe(0);
    await proxy.close();
    await coordinator.close();
  });
});
