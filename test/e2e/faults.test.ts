import { describe, expect, it } from "vitest";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { closeAfterEach } from "../support/cleanup.js";
import {
  capturingLogger,
  coordinatorWithReceipts,
  inferenceJob,
  minerConfig,
  startMiner,
} from "../support/harness.js";
import { type FaultProxy, freePort, startFaultProxy } from "../support/proxy.js";

const closeLater = closeAfterEach();
let coordinator: LocalCoordinator | null = null;
let proxy: FaultProxy | null = null;

const completed = (ids: string[]) => (c: LocalCoordinator) =>
  ids.every((id) => c.job(id)?.state === "COMPLETED");

describe("coordinator faults", () => {
  it("retries through 5xx, 429 with Retry-After and answers slower than the timeout; nothing is dropped", async () => {
    coordinator = closeLater((await coordinatorWithReceipts()).coordinator);
    const ids = Array.from({ length: 6 }, (_, i) => coordinator!.enqueue(inferenceJob(i)));
    proxy = closeLater(
      await startFaultProxy(coordinator.url, [
        { route: "POST /v1/miners/register", times: 2, status: 503 },
        { route: "POST /v1/miners/poll", times: 2, status: 429, headers: { "retry-after": "1" } },
        { route: "POST /v1/miners/poll", times: 1, status: 500 },
        { route: /^POST \/v1\/miners\/[^/]+\/result$/, times: 2, status: 502 },
        { route: "POST /v1/miners/heartbeat", times: 1, delayMs: 1500 },
      ]),
    );
    const { log, lines } = capturingLogger("info");
    const miner = await startMiner(minerConfig(proxy.url, { requestTimeout: 1 }), log);
    await coordinator.waitFor(completed(ids), 60_000);
    expect((await miner.stop()).code).toBe(0);
    for (const id of ids) expect(coordinator.job(id)!.submissions).toBe(1);
    expect(proxy.injected).toMatchObject({ "503": 2, "429": 2, "500": 1, "502": 2 });
    const events = lines.map((l) => JSON.parse(l) as { event?: string });
    expect(events.some((e) => e.event === "register_retry")).toBe(true);
    expect(events.some((e) => e.event === "poll_failed")).toBe(true);
    expect(events.some((e) => e.event === "submit_retry")).toBe(true);
  });

  it("waits out a coordinator that refuses connections at start", async () => {
    const port = await freePort();
    const miner = await startMiner(minerConfig(`http://127.0.0.1:${port}`));
    await new Promise((r) => setTimeout(r, 1500));
    coordinator = closeLater((await coordinatorWithReceipts({ port })).coordinator);
    const id = coordinator.enqueue(inferenceJob(1));
    await coordinator.waitFor(completed([id]), 60_000);
    expect((await miner.stop()).code).toBe(0);
  });

  it("stops with exit code 2 and a clear reason when the API key is refused", async () => {
    coordinator = closeLater((await coordinatorWithReceipts()).coordinator);
    const miner = await startMiner(minerConfig(coordinator.url, { apiKey: "wrong-key-123" }));
    const exit = await miner.done;
    expect(exit.code).toBe(2);
    expect(exit.reason).toMatch(/--api-key/);
    expect(exit.reason).not.toContain("wrong-key-123");
    await miner.close();
  });
});
