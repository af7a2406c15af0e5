// A wedged backend (a GPU that never returns, even after an abort) must not hang the miner:
// the job is failed, the outbox is flushed, and the process exits 70 for systemd to restart it.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Backend, InferenceRequest, InferenceResult } from "../../src/backends/types.js";
import { createCoordinatorClient } from "../../src/coordinator/client.js";
import { silentLogger } from "../../src/log.js";
import { ClaimJournal } from "../../src/miner/journal.js";
import { Miner } from "../../src/miner/loop.js";
import { Outbox } from "../../src/miner/outbox.js";
import { buildMinerReceipt, generateKeyPair } from "../../src/receipts/index.js";
import { API_KEY, coordinatorWithReceipts } from "../e2e/harness.js";
import { startFaultProxy } from "../e2e/proxy.js";

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
    const state = mkdtempSync(join(tmpdir(), "watchdog-"));
    const key = generateKeyPair();
    const log = silentLogger();
    const miner = new Miner({
      settings: {
        minerId: "wd-miner",
        concurrency: 2,
        heartbeatIntervalMs: 1000,
        pollsPerWindow: Number.POSITIVE_INFINITY,
        pollWindowMs: 60_000,
        idlePollIntervalMs: 5,
        longPollSeconds: 0,
        jobTimeoutMs: 400,
        gracePeriodMs: 1000,
        abortGraceMs: 300,
        flushTimeoutMs: 10_000,
        limits: { maxPromptChars: 100, maxTokens: 10, defaultMaxTokens: 1 },
        unloadAfterJob: false,
      },
      client: createCoordinatorClient({
        protocol: "aitbc",
        baseUrl: proxy.url,
        apiKey: API_KEY,
        minerId: "wd-miner",
        timeoutMs: 2000,
        log,
      }),
      backend: wedgingBackend(),
      outbox: new Outbox(join(state, "outbox")),
      journal: new ClaimJournal(join(state, "journal")),
      log,
      capabilities: async () => ({
        gpus: [],
        cuda: null,
        models: ["m"],
        platform: "CPU",
        supported_tasks: ["inference"],
        max_concurrent_jobs: 2,
      }),
      hostFacts: async () => ({ models: ["m"], gpuNames: [], maxVramGb: 0, cuda: null }),
      heartbeatMetadata: async () => ({}),
      signReceipt: (input) => buildMinerReceipt(input, key) as unknown as Record<string, unknown>,
      checkCoordinatorReceipt: () => ({ verified: null, receipt: null }),
      recordReceipt: async () => {},
    });
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
