// Removals from the journal and the outbox are not fsync'd (src/miner/durable-store.ts): a crash
// can bring one back. These tests put the state directory in that shape and start a miner on it.
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createCoordinatorClient } from "../../src/coordinator/client.js";
import type { CompletedJob, CoordinatorClient } from "../../src/coordinator/types.js";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { silentLogger } from "../../src/log.js";
import { type ClaimedJob, ClaimJournal } from "../../src/miner/journal.js";
import { Miner } from "../../src/miner/loop.js";
import { answer, scriptedBackend } from "../support/backends.js";
import { API_KEY, coordinatorWithReceipts } from "../support/harness.js";
import { testMinerDeps } from "../support/miner-deps.js";
import { storedKeys } from "../support/state-files.js";

let coordinator: LocalCoordinator | null = null;
afterEach(async () => {
  await coordinator?.close();
  coordinator = null;
});

/** A record as earlier versions kept it: `<sha256 of the key, 40 hex>.json`, `{key, value}`. */
function writeLegacyRecord(dir: string, key: string, value: unknown): void {
  mkdirSync(dir, { recursive: true });
  const name = `${createHash("sha256").update(key).digest("hex").slice(0, 40)}.json`;
  writeFileSync(join(dir, name), JSON.stringify({ key, value }));
}

/** The same client without the optional listing of the jobs the coordinator runs for us. */
function withoutListing(client: CoordinatorClient): CoordinatorClient {
  return Object.assign(Object.create(client) as CoordinatorClient, { runningJobs: undefined });
}

async function waitUntil(cond: () => boolean, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met within 60 s");
    await new Promise((r) => setTimeout(r, 20));
  }
}

function countingBackend() {
  const calls: string[] = [];
  const backend = scriptedBackend("m", async (req) => {
    calls.push(req.prompt);
    return answer(req, "ran again");
  });
  return { backend, calls };
}

describe("a removal lost in a crash", () => {
  it.each([
    ["in the logs", false],
    ["as one file each, as an earlier version kept them", true],
  ])(
    "a claim back beside its result (%s): the result is submitted once, the job is not run again, the claim goes",
    async (_, legacy) => {
      coordinator = (await coordinatorWithReceipts()).coordinator;
      const jobId = coordinator.enqueue({ payload: { model: "m", prompt: "p" } });
      const { backend, calls } = countingBackend();
      const deps = testMinerDeps({ url: coordinator.url, backend, minerId: "lr-miner" });
      // The job is handed to this miner, as before the crash.
      const client = createCoordinatorClient({
        protocol: "aitbc",
        baseUrl: coordinator.url,
        apiKey: API_KEY,
        minerId: "lr-miner",
        timeoutMs: 2000,
        log: silentLogger(),
      });
      await client.register(await deps.capabilities(), 1);
      const job = await client.poll(0);
      expect(job?.jobId).toBe(jobId);
      await client.close();
      // What the crash left: the result in the outbox, and its claim, whose removal was lost.
      const now = Date.now();
      const result: CompletedJob = {
        jobId,
        output: "computed before the crash",
        model: "m",
        promptTokens: 1,
        completionTokens: 4,
        executionTimeS: 0.01,
        startedAt: now - 10,
        completedAt: now,
        metrics: {
          duration_ms: 10,
          gpu_utilization: null,
          memory_used: null,
          memory_peak: null,
          units: 4,
          unit_type: "tokens",
        },
        receipt: deps.signReceipt({
          jobId,
          minerId: "lr-miner",
          model: "m",
          prompt: "p",
          output: "computed before the crash",
          units: 4,
          startedAt: Math.floor((now - 10) / 1000),
          completedAt: Math.floor(now / 1000),
          durationMs: 10,
        }),
      };
      const claim: ClaimedJob = {
        jobId,
        payload: job!.payload,
        constraints: null,
        claimedAt: now,
        deadlineAt: now + 60_000,
      };
      if (legacy) {
        writeLegacyRecord(join(deps.stateDir, "outbox"), jobId, result);
        writeLegacyRecord(join(deps.stateDir, "journal"), jobId, claim);
      } else {
        await deps.outbox.open();
        await deps.journal.open();
        await deps.outbox.put(result);
        await deps.journal.record(claim);
        await Promise.all([deps.outbox.close(), deps.journal.close()]);
      }

      const miner = new Miner(deps);
      const done = miner.run();
      await coordinator.waitFor((c) => c.job(jobId)?.state === "COMPLETED", 60_000);
      await miner.shutdown("test over");
      expect((await done).code).toBe(0);
      expect(calls).toEqual([]);
      expect(coordinator.job(jobId)!.submissions).toBe(1);
      expect(coordinator.job(jobId)!.result).toMatchObject({ output: "computed before the crash" });
      expect(storedKeys(join(deps.stateDir, "journal"))).toEqual([]);
      expect(storedKeys(join(deps.stateDir, "outbox"))).toEqual([]);
      for (const dir of ["journal", "outbox"]) {
        expect(readdirSync(join(deps.stateDir, dir)).filter((n) => n.endsWith(".json"))).toEqual([]);
      }
    },
  );

  it.each([
    ["the coordinator lists what it runs for the miner", true],
    ["no listing (an older coordinator, the claim dialect)", false],
  ])(
    "a result back after it was acknowledged (%s): never run again, submitted again only without the listing",
    async (_, listing) => {
      coordinator = (await coordinatorWithReceipts()).coordinator;
      const jobId = coordinator.enqueue({ payload: { model: "m", prompt: "p" } });
      const { backend, calls } = countingBackend();
      const deps = testMinerDeps({ url: coordinator.url, backend, minerId: "lr-miner-2" });
      const first = new Miner(deps);
      const firstRun = first.run();
      await coordinator.waitFor((c) => c.job(jobId)?.state === "COMPLETED", 60_000);
      await first.shutdown("test over");
      await firstRun;
      expect(calls).toEqual(["p"]);
      // Bring the acknowledged result back, as a lost unlink would.
      const kept = coordinator.job(jobId)!;
      await deps.outbox.open();
      await deps.outbox.put({
        jobId,
        output: "ran again",
        model: "m",
        promptTokens: 1,
        completionTokens: 1,
        executionTimeS: 0.001,
        startedAt: Date.now(),
        completedAt: Date.now(),
        metrics: {
          duration_ms: 1,
          gpu_utilization: null,
          memory_used: null,
          memory_peak: null,
          units: 1,
          unit_type: "tokens",
        },
        receipt: { job_id: jobId },
      });
      await deps.outbox.close();
      const secondDeps = testMinerDeps({
        url: coordinator.url,
        backend,
        minerId: "lr-miner-2",
        stateDir: deps.stateDir,
      });
      // Without the listing: the client of a dialect (or a coordinator) that has none.
      const client = listing ? secondDeps.client : withoutListing(secondDeps.client);
      const second = new Miner({ ...secondDeps, client });
      const secondRun = second.run();
      if (listing) {
        // The coordinator no longer runs it for this miner: settled, dropped, never sent again.
        await waitUntil(() => storedKeys(join(deps.stateDir, "outbox")).length === 0);
      } else {
        await coordinator.waitFor((c) => c.stats().duplicateSubmissions >= 1, 60_000);
      }
      await second.shutdown("test over");
      expect((await secondRun).code).toBe(0);
      expect(calls).toEqual(["p"]);
      expect(coordinator.job(jobId)!.state).toBe("COMPLETED");
      expect(coordinator.job(jobId)!.submissions).toBe(kept.submissions);
      expect(coordinator.stats().duplicateSubmissions).toBe(listing ? 0 : 1);
      expect(storedKeys(join(deps.stateDir, "outbox"))).toEqual([]);
    },
  );

  it("a claim whose write reported a failure after its file landed is still removed once the result is delivered", async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    const jobId = coordinator.enqueue({ payload: { model: "m", prompt: "p" } });
    const { backend, calls } = countingBackend();
    const deps = testMinerDeps({ url: coordinator.url, backend, minerId: "lr-miner-3" });
    // The rename landed, then the directory fsync failed (EIO): the write rejects, the file stays.
    const journal = new (class extends ClaimJournal {
      override record(job: ClaimedJob): Promise<void> {
        return super.record(job).then(() => {
          throw Object.assign(new Error("EIO: injected after the rename"), { code: "EIO" });
        });
      }
    })(join(deps.stateDir, "journal"));
    const miner = new Miner({ ...deps, journal });
    const done = miner.run();
    await coordinator.waitFor((c) => c.job(jobId)?.state === "COMPLETED", 60_000);
    await miner.shutdown("test over");
    expect((await done).code).toBe(0);
    expect(calls).toEqual(["p"]);
    expect(storedKeys(join(deps.stateDir, "journal"))).toEqual([]);
  });
});
