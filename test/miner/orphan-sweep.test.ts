// After a poll that failed on the coordinator's side the miner settles with the coordinator's
// listing again (src/miner/orphan-sweep.ts), but a coordinator that answers every poll with 500 is
// not asked for its listing each time: at most once per ORPHAN_SWEEP_SPACING_MS. The real miner
// against the local coordinator over HTTP, every poll answered 500 by an injected fault.
import { afterEach, describe, expect, it } from "vitest";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { Miner } from "../../src/miner/loop.js";
import { ORPHAN_SWEEP_SPACING_MS } from "../../src/miner/orphan-sweep.js";
import { answer, scriptedBackend } from "../support/backends.js";
import { capturingLogger, coordinatorWithReceipts } from "../support/harness.js";
import { testMinerDeps } from "../support/miner-deps.js";

let coordinator: LocalCoordinator | null = null;
afterEach(async () => {
  await coordinator?.close();
  coordinator = null;
});

const LISTING = "POST /v1/miners/{miner_id}/jobs";

async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 90_000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("settling after failed polls", () => {
  it("a coordinator answering every poll with 500: its listing is asked at start, then at most once per spacing", async () => {
    coordinator = (await coordinatorWithReceipts({ faults: { serverErrorRate: 1, routes: ["poll"] } }))
      .coordinator;
    const c = coordinator;
    const backend = scriptedBackend("m", async (req) => answer(req));
    const { log, lines } = capturingLogger("debug");
    const miner = new Miner({ ...testMinerDeps({ url: c.url, backend, minerId: "sweep-1" }), log });
    const done = miner.run();
    const failedPolls = () => lines.filter((l) => l.includes('"poll_failed"')).length;
    await until(() => failedPolls() >= 1, "the first failed poll");
    const first = performance.now();
    await until(() => failedPolls() >= 5, "five failed polls");
    const elapsed = performance.now() - first;
    await miner.shutdown("test over");
    expect((await done).code).toBe(0);
    // One listing at start (recovery), then one sweep per spacing begun since the first failure.
    const sweeps = lines.filter((l) => l.includes('"orphan_check"')).length;
    expect(sweeps).toBeGreaterThanOrEqual(1);
    expect(sweeps).toBeLessThanOrEqual(1 + Math.floor(elapsed / ORPHAN_SWEEP_SPACING_MS));
    expect(c.stats().byRoute[LISTING]).toBe(1 + sweeps);
    expect(c.stats().faults.serverError).toBeGreaterThanOrEqual(5);
  }, 120_000);
});
