// The miner settles with the coordinator (src/miner/reconcile.ts, recover.ts): at start, and again
// when a storage fault heals, it asks which jobs the coordinator runs for it. A job it no longer
// runs for us is never run or submitted again; one it runs for us that nothing here knows is
// failed back as `orphaned`. Against the local coordinator in both modes, over real HTTP.
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createCoordinatorClient } from "../../src/coordinator/client.js";
import type { CompletedJob, CoordinatorClient } from "../../src/coordinator/types.js";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { silentLogger } from "../../src/log.js";
import { Miner } from "../../src/miner/loop.js";
import { reconcile } from "../../src/miner/reconcile.js";
import { StateStorage } from "../../src/miner/state-storage.js";
import { answer, scriptedBackend } from "../support/backends.js";
import { API_KEY, capturingLogger, coordinatorWithReceipts } from "../support/harness.js";
import { testMinerDeps } from "../support/miner-deps.js";
import { canSetImmutable, setImmutable, storedKeys } from "../support/state-files.js";

let coordinator: LocalCoordinator | null = null;
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await coordinator?.close();
  coordinator = null;
});

function countingBackend() {
  const calls: string[] = [];
  const backend = scriptedBackend("m", async (req) => {
    calls.push(req.prompt);
    return answer(req, `ran ${req.prompt}`);
  });
  return { backend, calls };
}

/** Another client speaking as `minerId`: hands jobs to that miner without its knowing. */
async function asMiner(url: string, minerId: string): Promise<CoordinatorClient> {
  const c = createCoordinatorClient({
    protocol: "aitbc",
    baseUrl: url,
    apiKey: API_KEY,
    minerId,
    timeoutMs: 5000,
    log: silentLogger(),
  });
  cleanups.push(() => c.close());
  await c.register(
    {
      gpus: [],
      cuda: null,
      models: ["m"],
      platform: "CPU",
      supported_tasks: ["inference"],
      max_concurrent_jobs: 4,
    },
    4,
  );
  return c;
}

function result(jobId: string, output: string): CompletedJob {
  const now = Date.now();
  return {
    jobId,
    output,
    model: "m",
    promptTokens: 1,
    completionTokens: 1,
    executionTimeS: 0.001,
    startedAt: now,
    completedAt: now,
    metrics: {
      duration_ms: 1,
      gpu_utilization: null,
      memory_used: null,
      memory_peak: null,
      units: 1,
      unit_type: "tokens",
    },
    receipt: { job_id: jobId },
  };
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 60_000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The error code the coordinator kept: upstream keeps only the message, which the code leads. */
function errorCode(c: LocalCoordinator, jobId: string): string | null {
  const e = c.job(jobId)?.error;
  return e ? (e.code ?? e.message.split(":")[0] ?? null) : null;
}

describe("reconcile", () => {
  it("settled: recorded here, not run for us there, not in hand; orphans: run for us there, unknown here", () => {
    const plan = reconcile(
      new Set(["running-known", "running-orphan", "running-in-hand"]),
      [
        ["running-known", "claim"],
        ["gone-result", "result"],
        ["gone-result", "claim"],
        ["gone-failure", "failure"],
        ["in-hand-not-listed", "claim"],
      ],
      new Set(["running-in-hand", "in-hand-not-listed"]),
    );
    expect(plan.orphans).toEqual(["running-orphan"]);
    expect([...plan.settled]).toEqual([
      ["gone-result", ["result", "claim"]],
      ["gone-failure", ["failure"]],
    ]);
  });
});

describe.each([
  ["reference", false],
  ["upstream", true],
])("settling with the coordinator at start (%s mode)", (_, upstreamQuirks) => {
  it("a job the coordinator runs for this miner that its journal lacks is failed back as orphaned, not run", async () => {
    coordinator = (await coordinatorWithReceipts({ upstreamQuirks, leaseTimeoutMs: 0 })).coordinator;
    const orphan = coordinator.enqueue({ payload: { model: "m", prompt: "orphan" } });
    // Handed to this miner id (a crash just after, or a poll answer lost on the way): no record.
    expect((await (await asMiner(coordinator.url, "settle-1")).poll(0))?.jobId).toBe(orphan);
    const { backend, calls } = countingBackend();
    const { log, lines } = capturingLogger("info");
    const deps = { ...testMinerDeps({ url: coordinator.url, backend, minerId: "settle-1" }), log };
    const miner = new Miner(deps);
    const done = miner.run();
    await coordinator.waitFor((c) => c.job(orphan)?.state === "FAILED", 60_000);
    expect(errorCode(coordinator, orphan)).toBe("orphaned");
    // Mining goes on.
    const next = coordinator.enqueue({ payload: { model: "m", prompt: "next" } });
    await coordinator.waitFor((c) => c.job(next)?.state === "COMPLETED", 60_000);
    await miner.shutdown("test over");
    expect((await done).code).toBe(0);
    expect(calls).toEqual(["next"]);
    expect(lines.filter((l) => l.includes('"job_orphaned"'))).toHaveLength(1);
    expect(coordinator.jobs().filter((j) => j.state === "RUNNING")).toEqual([]);
  });

  it("records of jobs the coordinator has settled (a claim and a result whose removals were lost) are dropped, neither run nor submitted again", async () => {
    coordinator = (await coordinatorWithReceipts({ upstreamQuirks, leaseTimeoutMs: 0 })).coordinator;
    const a = coordinator.enqueue({ payload: { model: "m", prompt: "a" } });
    const b = coordinator.enqueue({ payload: { model: "m", prompt: "b" } });
    const still = coordinator.enqueue({ payload: { model: "m", prompt: "still running" } });
    const other = await asMiner(coordinator.url, "settle-2");
    for (const id of [a, b, still]) expect((await other.poll(0))?.jobId).toBe(id);
    await other.submit(result(a, "accepted before the crash"));
    await other.submit(result(b, "accepted before the crash"));
    const { backend, calls } = countingBackend();
    const deps = testMinerDeps({ url: coordinator.url, backend, minerId: "settle-2" });
    // What a lost removal leaves: a's claim (its result went from memory), b's result, and the
    // claim of a job still running for us.
    await Promise.all([deps.outbox.open(), deps.journal.open()]);
    const claim = (jobId: string, prompt: string) => ({
      jobId,
      payload: { model: "m", prompt },
      constraints: {},
      claimedAt: Date.now(),
      deadlineAt: Date.now() + 60_000,
    });
    await deps.journal.record(claim(a, "a"));
    await deps.outbox.put(result(b, "again"));
    await deps.journal.record(claim(still, "still running"));
    await Promise.all([deps.outbox.close(), deps.journal.close()]);

    const { log, lines } = capturingLogger("info");
    const miner = new Miner({ ...deps, log });
    const done = miner.run();
    await coordinator.waitFor((c) => c.job(still)?.state === "COMPLETED", 60_000);
    await until(
      () =>
        storedKeys(join(deps.stateDir, "journal")).length === 0 &&
        storedKeys(join(deps.stateDir, "outbox")).length === 0,
      "the settled records dropped",
    );
    await miner.shutdown("test over");
    expect((await done).code).toBe(0);
    expect(calls).toEqual(["still running"]);
    for (const id of [a, b]) {
      expect(coordinator.job(id)).toMatchObject({
        state: "COMPLETED",
        submissions: 1,
        duplicateSubmissions: 0,
      });
    }
    const settled = lines.filter((l) => l.includes('"job_already_settled"')).map((l) => JSON.parse(l));
    expect(settled.map((e: { jobId: string }) => e.jobId).sort()).toEqual([a, b].sort());
  });
});

describe("settling again when a storage fault heals", () => {
  it.runIf(canSetImmutable)(
    "a job handed over while the journal could not be written, unknown to the miner, is failed back as orphaned; the job in hand is not",
    async () => {
      coordinator = (await coordinatorWithReceipts()).coordinator;
      const { backend, calls } = countingBackend();
      const { log, lines } = capturingLogger("info");
      const base = testMinerDeps({ url: coordinator.url, backend, minerId: "settle-3" });
      const storage = new StateStorage(join(base.stateDir, "outbox", ".tmp"), log, 0);
      const miner = new Miner({ ...base, log, storage });
      const done = miner.run();
      const journalLog = join(base.stateDir, "journal", "records.log");
      await coordinator.waitFor((c) => c.miners().length === 1, 60_000);
      await until(() => lines.some((l) => l.includes('"event":"registered"')), "registered");
      setImmutable(journalLog, true);
      cleanups.push(() => setImmutable(journalLog, false));
      const inHand = coordinator.enqueue({ payload: { model: "m", prompt: "in hand" } });
      // Its claim cannot be journaled: it runs and is delivered from memory; then no job is taken.
      await coordinator.waitFor((c) => c.job(inHand)?.state === "COMPLETED", 60_000);
      await until(() => !miner.snapshot().stateWritable, "state unwritable");
      const orphan = coordinator.enqueue({ payload: { model: "m", prompt: "orphan" } });
      expect((await (await asMiner(coordinator.url, "settle-3")).poll(0))?.jobId).toBe(orphan);
      setImmutable(journalLog, false);
      await coordinator.waitFor((c) => c.job(orphan)?.state === "FAILED", 60_000);
      expect(errorCode(coordinator, orphan)).toBe("orphaned");
      const next = coordinator.enqueue({ payload: { model: "m", prompt: "next" } });
      await coordinator.waitFor((c) => c.job(next)?.state === "COMPLETED", 60_000);
      await miner.shutdown("test over");
      expect((await done).code).toBe(0);
      expect(calls).toEqual(["in hand", "next"]);
      expect(coordinator.job(inHand)).toMatchObject({ state: "COMPLETED", submissions: 1 });
      expect(lines.filter((l) => l.includes('"state_unwritable"'))).toHaveLength(1);
    },
  );
});
