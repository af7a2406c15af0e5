// A wall-clock step (NTP on a VM at boot) either way changes nothing: every schedule runs on the
// monotonic clock. Here the step is Date.now() in this process (the CLI under libfaketime is in
// test/e2e/wall-clock.test.ts); polls, heartbeats (out-of-turn ones too), jobs and /healthz go on.
import { afterEach, describe, expect, it, vi } from "vitest";
import { BackendError } from "../../src/backends/types.js";
import { parseRetryAfter } from "../../src/coordinator/http.js";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { startLocalCoordinator } from "../../src/local-coordinator/index.js";
import { HeartbeatSchedule } from "../../src/miner/heartbeat.js";
import { Miner } from "../../src/miner/loop.js";
import { answer, scriptedBackend } from "../support/backends.js";
import { API_KEY, coordinatorWithReceipts } from "../support/harness.js";
import { testMinerDeps } from "../support/miner-deps.js";

const HOUR = 3_600_000;
const POLL = "POST /v1/miners/poll";
const BEAT = "POST /v1/miners/heartbeat";

let coordinator: LocalCoordinator | null = null;
afterEach(async () => {
  vi.restoreAllMocks();
  await coordinator?.close();
  coordinator = null;
});

/** Date.now() = the real wall clock + `offset` (set it to step the clock). */
function steppableWallClock() {
  const real = Date.now.bind(Date);
  const clock = { offset: 0 };
  vi.spyOn(Date, "now").mockImplementation(() => real() + clock.offset);
  return clock;
}

describe("a wall-clock step", () => {
  it("back by hours, then forward: polling, heartbeats, jobs and health carry on", async () => {
    const wall = steppableWallClock();
    coordinator = (await coordinatorWithReceipts()).coordinator;
    // A job whose failure is acknowledged asks for a heartbeat out of turn (heartbeat.soon()).
    const backend = scriptedBackend("m", async (req) => {
      if (req.prompt === "fail") throw new BackendError("inference_failed", "scripted failure");
      return answer(req);
    });
    const deps = testMinerDeps({
      url: coordinator.url,
      backend,
      minerId: "clock-miner",
      // The coordinator's real budget shape (a window of sends), spaced 100 ms apart when idle.
      settings: {
        pollsPerWindow: 600,
        pollWindowMs: 60_000,
        idlePollIntervalMs: 100,
        heartbeatIntervalMs: 300,
      },
    });
    const miner = new Miner(deps);
    const done = miner.run();
    const count = (route: string) => coordinator!.stats().byRoute[route] ?? 0;
    await coordinator.waitFor(() => count(POLL) >= 5 && count(BEAT) >= 1, 60_000);

    for (const offset of [-3 * HOUR, 5 * HOUR]) {
      wall.offset = offset;
      const polls = count(POLL);
      const beats = count(BEAT);
      const ok = coordinator.enqueue({ payload: { model: "m", prompt: "p" } });
      const failed = coordinator.enqueue({ payload: { model: "m", prompt: "fail" } });
      await coordinator.waitFor(
        (c) => c.job(ok)?.state === "COMPLETED" && c.job(failed)?.state === "FAILED",
        60_000,
      );
      // Past the out-of-turn heartbeat the failure asked for: the regular ones still come.
      const afterJobs = count(BEAT);
      await coordinator.waitFor(() => count(POLL) >= polls + 20 && count(BEAT) >= afterJobs + 3, 60_000);
      expect(count(BEAT)).toBeGreaterThan(beats);
      expect(miner.health()).toEqual({ live: true, ready: true, reasons: [] });
    }
    await miner.shutdown("test over");
    expect((await done).code).toBe(0);
  });

  it("an out-of-turn heartbeat after a step back goes out within its spacing, not hours later", async () => {
    const wall = steppableWallClock();
    const sent: number[] = [];
    const beats = new HeartbeatSchedule(60_000, async () => {
      sent.push(performance.now());
      return null;
    });
    beats.start();
    await vi.waitFor(() => expect(sent.length).toBe(1), { timeout: 10_000 });
    wall.offset = -3 * HOUR;
    beats.soon();
    await vi.waitFor(() => expect(sent.length).toBe(2), { timeout: 10_000 });
    beats.stop();
  });

  it("leases and rate windows of the local coordinator run on its schedule clock, not the wall", async () => {
    let wall = 1_700_000_000_000;
    let tick = 0;
    coordinator = await startLocalCoordinator({
      apiKeys: [API_KEY],
      leaseTimeoutMs: 5000,
      now: () => wall,
      tick: () => tick,
    });
    const id = coordinator.enqueue({ payload: { model: "m", prompt: "p" } });
    const call = (path: string, body: unknown) =>
      fetch(`${coordinator!.url}${path}`, {
        method: "POST",
        headers: { "x-api-key": API_KEY, "x-miner-id": "lease-miner", "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    expect(
      (await call("/v1/miners/register", { capabilities: { models: ["m"] }, concurrency: 1 })).status,
    ).toBe(200);
    expect((await call("/v1/miners/poll", { max_wait_seconds: 0 })).status).toBe(200);
    for (const step of [-3 * HOUR, 6 * HOUR]) {
      wall += step;
      expect(coordinator.sweepLeases()).toBe(0);
    }
    tick += 5000;
    expect(coordinator.sweepLeases()).toBe(1);
    expect(coordinator.job(id)).toMatchObject({ state: "QUEUED" });
  });

  it("an HTTP-date Retry-After is read against the answer's own Date header", () => {
    const server = Date.parse("Wed, 02 Dec 2026 04:00:00 GMT");
    const retry = new Date(server + 30_000).toUTCString();
    const date = new Date(server).toUTCString();
    // Our clock three hours behind or five ahead: the same 30 s.
    for (const ours of [server - 3 * HOUR, server + 5 * HOUR])
      expect(parseRetryAfter(retry, date, ours)).toBe(30_000);
    // No Date header: our clock is all there is.
    expect(parseRetryAfter(retry, undefined, server)).toBe(30_000);
  });
});
