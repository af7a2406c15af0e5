// The real miner against the local coordinator in upstream mode (docs/protocols.md#how-the-upstream-coordinator-behaves): /fail does not free
// the coordinator's slot, so after each acknowledged failure the miner must heartbeat at once
// (inflight from its body) instead of sitting idle until the next heartbeat interval.
import { afterEach, describe, expect, it } from "vitest";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import {
  capturingLogger,
  coordinatorWithReceipts,
  inferenceJob,
  minerConfig,
  startMiner,
} from "../support/harness.js";

let coordinator: LocalCoordinator | null = null;
afterEach(async () => {
  await coordinator?.close();
  coordinator = null;
});

// No scheduled heartbeat within the test: a slot stuck after a failure (upstream frees it only on
// a heartbeat) would hold every later job until the deadline, however fast the machine.
const HEARTBEAT_S = 3600;
const DEADLINE_MS = 120_000;

describe("miner against an upstream-mode coordinator", () => {
  it("concurrency 1, 10 jobs with 3 failures: all final with no scheduled heartbeat to free the slots", async () => {
    coordinator = (await coordinatorWithReceipts({ upstreamQuirks: true })).coordinator;
    const c = coordinator;
    const bad = new Set([1, 4, 7]); // spread out, so each failure is followed by work to hand over
    const ids = Array.from({ length: 10 }, (_, i) =>
      c.enqueue(bad.has(i) ? { payload: { model: "no-such-model", prompt: "hi" } } : inferenceJob(i)),
    );
    const miner = await startMiner(minerConfig(c.url, { concurrency: 1, heartbeatInterval: HEARTBEAT_S }));
    let finished = true;
    try {
      await c.waitFor(
        (x) => ids.every((id) => ["COMPLETED", "FAILED"].includes(x.job(id)?.state ?? "")),
        DEADLINE_MS,
      );
    } catch {
      finished = false;
    }
    const exit = await miner.stop();
    const states = ids.map((id, i) => `${i}:${c.job(id)?.state}`);
    expect(finished, `not all final within ${DEADLINE_MS} ms: ${states.join(" ")}`).toBe(true);
    expect(exit.code).toBe(0);
    ids.forEach((id, i) => {
      const j = c.job(id)!;
      if (bad.has(i)) {
        // Upstream keeps only the message.
        expect(j).toMatchObject({ state: "FAILED", error: { code: null } });
        expect(j.error?.message).not.toBe("");
      } else {
        expect(j.state, `job ${i}`).toBe("COMPLETED");
        expect(j.receiptCheck).toEqual({ ok: true });
      }
    });
    expect(c.jobs().filter((j) => j.state === "RUNNING" || j.state === "QUEUED")).toEqual([]);
  }, 180_000);

  it("accepts upstream's receipts (zk_status/tee_status added after signing)", async () => {
    const started = await coordinatorWithReceipts({ upstreamQuirks: true });
    coordinator = started.coordinator;
    const c = coordinator;
    const ids = [0, 1].map((i) => c.enqueue(inferenceJob(i)));
    const { log, lines } = capturingLogger("info");
    const miner = await startMiner(
      minerConfig(c.url, { coordinatorKey: started.coordinatorKey.publicKeyHex }),
      log,
    );
    await c.waitFor((x) => ids.every((id) => x.job(id)?.state === "COMPLETED"), 60_000);
    expect((await miner.stop()).code).toBe(0);
    for (const id of ids) expect(c.job(id)?.coordinatorReceipt).toMatchObject({ zk_status: "not_required" });
    expect(lines.filter((l) => l.includes("coordinator_receipt_invalid"))).toEqual([]);
  }, 90_000);
});
