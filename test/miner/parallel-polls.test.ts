// Polling a backlog across a network: one poll per free slot once a poll has brought a job, never
// more jobs than slots, and a single poll at a time when idle.
import { describe, expect, it } from "vitest";
import { createCoordinatorClient } from "../../src/coordinator/client.js";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { silentLogger } from "../../src/log.js";
import { Miner } from "../../src/miner/loop.js";
import { answer, scriptedBackend } from "../support/backends.js";
import { closeAfterEach } from "../support/cleanup.js";
import { coordinatorWithReceipts } from "../support/harness.js";
import { testMinerDeps } from "../support/miner-deps.js";
import { type FaultProxy, startFaultProxy } from "../support/proxy.js";

const closeLater = closeAfterEach();
let coordinator: LocalCoordinator | null = null;
let proxy: FaultProxy | null = null;

/** Answers after `ms`, counting how many jobs run at once. */
function slowBackend(ms: number) {
  const seen = { running: 0, peak: 0 };
  const backend = scriptedBackend("m", async (req) => {
    seen.running++;
    seen.peak = Math.max(seen.peak, seen.running);
    await new Promise((r) => setTimeout(r, ms));
    seen.running--;
    return answer(req, "ok", ms);
  });
  return { backend, seen };
}

const POLL = "POST /v1/miners/poll";

describe("polling a backlog", () => {
  it("fills every free slot with its own poll, never holds more jobs than slots, and polls one at a time when idle", async () => {
    coordinator = closeLater((await coordinatorWithReceipts()).coordinator);
    // Every poll takes 40 ms to reach the coordinator: a coordinator some distance away.
    proxy = closeLater(await startFaultProxy(coordinator.url, [{ route: POLL, times: 1e9, delayMs: 40 }]));
    const { backend, seen } = slowBackend(30);
    const deps = testMinerDeps({
      url: proxy.url,
      backend,
      minerId: "pp-miner",
      concurrency: 4,
      settings: { idlePollIntervalMs: 50 },
    });
    const miner = new Miner(deps);
    const done = miner.run();
    // Idle first: one poll at a time.
    await coordinator.waitFor((c) => c.stats().byRoute[POLL]! >= 4, 60_000);
    expect(proxy.peak[POLL]).toBe(1);
    const ids = Array.from({ length: 24 }, () =>
      coordinator!.enqueue({ payload: { model: "m", prompt: "p" } }),
    );
    await coordinator.waitFor((c) => ids.every((id) => c.job(id)?.state === "COMPLETED"), 60_000);
    await miner.shutdown("test over");
    expect((await done).code).toBe(0);
    expect(proxy.peak[POLL]).toBeGreaterThanOrEqual(2);
    expect(proxy.peak[POLL]).toBeLessThanOrEqual(4);
    expect(seen.peak).toBeGreaterThanOrEqual(2);
    expect(seen.peak).toBeLessThanOrEqual(4);
    expect(miner.snapshot()).toMatchObject({ completed: 24, failed: 0 });
  });

  it("in the claim dialect polls stay one at a time (parallel listings would race for one job)", async () => {
    coordinator = closeLater((await coordinatorWithReceipts()).coordinator);
    proxy = closeLater(
      await startFaultProxy(coordinator.url, [{ route: "GET /v1/jobs/available", times: 1e9, delayMs: 20 }]),
    );
    const { backend } = slowBackend(20);
    const deps = testMinerDeps({ url: proxy.url, backend, minerId: "pp-claim", concurrency: 4 });
    const claimDeps = { ...deps, client: claimClient(proxy.url) };
    const ids = Array.from({ length: 12 }, () =>
      coordinator!.enqueue({ payload: { model: "m", prompt: "p" } }),
    );
    const miner = new Miner(claimDeps);
    const done = miner.run();
    await coordinator.waitFor((c) => ids.every((id) => c.job(id)?.state === "COMPLETED"), 60_000);
    await miner.shutdown("test over");
    expect((await done).code).toBe(0);
    expect(proxy.peak["GET /v1/jobs/available"]).toBe(1);
  });
});

function claimClient(url: string) {
  return createCoordinatorClient({
    protocol: "claim",
    baseUrl: url,
    minerId: "pp-claim",
    timeoutMs: 2000,
    log: silentLogger(),
  });
}
