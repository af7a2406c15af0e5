// Cancelled work stops, and nothing is left orphaned (issue 20): the real miner with the real
// llama backend on a tiny model, against the local coordinator over HTTP.
// - A client cancels a job while it generates: the generation is aborted, no result (or failure)
//   ever reaches the coordinator, the slot is freed and the next job runs; a restart on the same
//   state neither resumes nor submits it. The same while its result waits to be delivered.
// - A poll that fails on the coordinator's side after handing a job over (upstream: a lone
//   surrogate in the payload; reference: an injected 500 after the hand-over): the job is failed
//   back as orphaned and nothing stays RUNNING.
// Conditions are waited for with generous deadlines; no verdict rests on the wall clock.
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createLlamaBackend, type LlamaBackend } from "../../src/backends/llama/index.js";
import { writeTinyGguf } from "../../src/backends/tiny-gguf.js";
import { createCoordinatorClient } from "../../src/coordinator/client.js";
import type { CoordinatorEvent, LocalCoordinator } from "../../src/local-coordinator/index.js";
import { silentLogger } from "../../src/log.js";
import { DEFAULT_ABORT_GRACE_MS, Miner } from "../../src/miner/loop.js";
import { OpsMetrics } from "../../src/ops/metrics.js";
import { tempDir } from "../support/backends.js";
import { API_KEY, capturingLogger, coordinatorWithReceipts } from "../support/harness.js";
import { testMinerDeps } from "../support/miner-deps.js";
import { type FaultProxy, startFaultProxy } from "../support/proxy.js";

/** A context this long lets one job generate for minutes on one thread: only an abort ends it soon. */
const CTX = 131_072;
const LONG_TOKENS = CTX - 64;
const DEADLINE_MS = 60_000;

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

let modelsDir: string | null = null;
function models(): string {
  if (!modelsDir) {
    modelsDir = tempDir("cancel-models-");
    writeTinyGguf(join(modelsDir, "tiny.gguf"), { name: "tiny", seed: 7, ctx: CTX });
  }
  return modelsDir;
}

async function backend(): Promise<LlamaBackend> {
  const b = createLlamaBackend({
    modelsDir: models(),
    threads: 1,
    concurrency: 1,
    gpu: false,
    log: silentLogger(),
    contextSize: CTX,
    preflight: false,
  });
  await b.init();
  cleanups.push(() => b.close());
  return b;
}

type Protocol = "aitbc" | "claim";

interface Started {
  miner: Miner;
  done: Promise<{ code: number }>;
  events: () => Record<string, unknown>[];
  /** This miner's aitbc_miner_jobs_cancelled_total by stage, as /metrics serves it. */
  cancelledCount: (stage: "running" | "delivering") => Promise<number>;
  stateDir: string;
  stop(): Promise<number>;
}

/** A miner on the real llama backend; `stateDir` again for a restart. */
async function startMiner(
  url: string,
  protocol: Protocol,
  stateDir?: string,
  heartbeatIntervalMs = 1000,
): Promise<Started> {
  const b = await backend();
  const { log, lines } = capturingLogger("info");
  const minerId = "cancel-miner";
  const base = testMinerDeps({
    url,
    backend: b,
    minerId,
    stateDir,
    settings: {
      jobTimeoutMs: 600_000,
      heartbeatIntervalMs,
      abortGraceMs: DEFAULT_ABORT_GRACE_MS, // as \`run\` has it: an abort lands between two tokens
      limits: { maxPromptChars: 10_000, maxTokens: CTX, defaultMaxTokens: 8 },
      cancelCheck: { intervalMs: 250, minAgeMs: 250 },
    },
  });
  const client = createCoordinatorClient({
    protocol,
    baseUrl: url,
    apiKey: API_KEY,
    minerId,
    timeoutMs: 5000,
    log,
  });
  const ops = new OpsMetrics();
  ops.addWorker("main", { gpu: "cpu", uuid: "", miner_id: minerId });
  const miner = new Miner({ ...base, client, log, onEvent: (e) => ops.observe("main", e) });
  const done = miner.run();
  let stopped: Promise<number> | null = null;
  const stop = () => {
    // The miner closes its client as it stops.
    stopped ??= miner
      .shutdown("test over")
      .then(() => done)
      .then((e) => e.code);
    return stopped;
  };
  cleanups.push(stop);
  return {
    miner,
    done,
    events: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
    cancelledCount: async (stage) => {
      const line = (await ops.metrics())
        .split("\n")
        .find((l) => l.startsWith("aitbc_miner_jobs_cancelled_total{") && l.includes(`stage="${stage}"`));
      return Number(line?.split(" ").at(-1));
    },
    stateDir: base.stateDir,
    stop,
  };
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + DEADLINE_MS;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Every coordinator event about `jobId` from now on. */
function watchJob(c: LocalCoordinator, jobId: string): CoordinatorEvent[] {
  const seen: CoordinatorEvent[] = [];
  const off = c.on((e) => {
    if ("jobId" in e && e.jobId === jobId) seen.push(e);
  });
  cleanups.push(off);
  return seen;
}

async function cancelOverHttp(url: string, jobId: string): Promise<void> {
  const res = await fetch(`${url}/v1/jobs/${encodeURIComponent(jobId)}/cancel`, {
    method: "POST",
    headers: { "x-api-key": API_KEY },
  });
  expect(res.status).toBe(200);
}

const short = (i: number) => ({
  payload: { model: "tiny", prompt: `short job ${i}`, max_tokens: 8, temperature: 0 },
});
const named = (events: Record<string, unknown>[], event: string, jobId: string) =>
  events.filter((e) => e["event"] === event && e["jobId"] === jobId);
/** What a result or failure for the job would show on the coordinator. */
const verdicts = (seen: CoordinatorEvent[]) =>
  seen.filter((e) => e.type === "completed" || e.type === "duplicate" || e.type === "failed");

describe.each([
  ["aitbc, reference", "aitbc", false],
  ["aitbc, upstream", "aitbc", true],
  ["claim", "claim", false],
] as const)("a job cancelled by a client (%s)", (_, protocol, upstreamQuirks) => {
  it("while generating: aborted, no result sent, slot freed, the next job runs; a restart neither resumes nor submits it", async () => {
    const { coordinator: c } = await coordinatorWithReceipts({ upstreamQuirks, leaseTimeoutMs: 0 });
    cleanups.push(() => c.close());
    const long = c.enqueue({
      payload: { model: "tiny", prompt: "Once upon a time", max_tokens: LONG_TOKENS, temperature: 0 },
    });
    const seen = watchJob(c, long);
    // No scheduled heartbeat within the test: upstream frees the cancelled job's slot only when a
    // heartbeat says so, so the next job runs only if one goes out once the slot is free.
    const m = await startMiner(c.url, protocol, undefined, 3_600_000);
    await until(() => named(m.events(), "job_started", long).length === 1, "the long job to start");
    await cancelOverHttp(c.url, long);

    await until(() => named(m.events(), "job_cancelled", long).length === 1, "the miner to see the cancel");
    await until(() => m.miner.snapshot().inflight === 0, "the generation to be aborted and the slot freed");
    const next = c.enqueue(short(1));
    await c.waitFor((x) => x.job(next)?.state === "COMPLETED", DEADLINE_MS);
    expect(c.job(long)?.state).toBe("CANCELED");
    expect(verdicts(seen)).toEqual([]);
    expect(named(m.events(), "job_cancelled", long)).toMatchObject([{ stage: "running" }]);
    expect(await m.cancelledCount("running")).toBe(1);
    expect(named(m.events(), "job_failed", long)).toEqual([]);
    expect(named(m.events(), "job_completed", long)).toEqual([]);
    expect(await m.stop()).toBe(0);

    const again = await startMiner(c.url, protocol, m.stateDir);
    const after = c.enqueue(short(2));
    await c.waitFor((x) => x.job(after)?.state === "COMPLETED", DEADLINE_MS);
    expect(named(again.events(), "job_resumed", long)).toEqual([]);
    expect(again.events().filter((e) => e["event"] === "outbox_recovered")).toEqual([]);
    expect(await again.stop()).toBe(0);
    expect(verdicts(seen)).toEqual([]);
    expect(c.job(long)?.state).toBe("CANCELED");
  }, 240_000);

  it("while its result waits to be delivered: withdrawn, never sent, not resubmitted after a restart", async () => {
    const { coordinator: c } = await coordinatorWithReceipts({ upstreamQuirks, leaseTimeoutMs: 0 });
    cleanups.push(() => c.close());
    // Results do not get through until the test says so.
    const proxy: FaultProxy = await startFaultProxy(c.url, [
      { route: /^POST \/v1\/(miners\/[^/]+\/result|jobs\/[^/]+\/complete)$/, times: 1_000_000, status: 503 },
    ]);
    cleanups.push(() => proxy.close());
    const job = c.enqueue(short(0));
    const seen = watchJob(c, job);
    const m = await startMiner(proxy.url, protocol);
    await until(
      () => m.events().some((e) => e["event"] === "submit_retry" && e["jobId"] === job),
      "the result to wait for delivery",
    );
    await cancelOverHttp(c.url, job);
    await until(() => named(m.events(), "job_cancelled", job).length === 1, "the miner to see the cancel");
    expect(named(m.events(), "job_cancelled", job)).toMatchObject([{ stage: "delivering" }]);
    expect(await m.cancelledCount("delivering")).toBe(1);
    expect(await m.cancelledCount("running")).toBe(0);
    proxy.clear();
    const next = c.enqueue(short(1));
    await c.waitFor((x) => x.job(next)?.state === "COMPLETED", DEADLINE_MS);
    expect(await m.stop()).toBe(0);

    const again = await startMiner(proxy.url, protocol, m.stateDir);
    const after = c.enqueue(short(2));
    await c.waitFor((x) => x.job(after)?.state === "COMPLETED", DEADLINE_MS);
    expect(again.events().filter((e) => e["event"] === "outbox_recovered")).toEqual([]);
    // The journal's marker, dropped at the start: settled by the listing (aitbc), or on its own (claim).
    const dropped = protocol === "aitbc" ? "job_already_settled" : "cancelled_job_dropped";
    expect(named(again.events(), dropped, job)).toHaveLength(1);
    expect(await again.stop()).toBe(0);
    expect(verdicts(seen)).toEqual([]);
    expect(c.job(job)?.state).toBe("CANCELED");
  }, 240_000);
});

describe.each([
  ["upstream: a lone surrogate in the payload", true],
  ["reference: a 500 injected after the hand-over", false],
])("a poll that fails on the coordinator's side after handing a job over (%s)", (_, upstreamQuirks) => {
  it("the job is failed back as orphaned, nothing stays RUNNING, and mining goes on", async () => {
    const { coordinator: c } = await coordinatorWithReceipts({
      upstreamQuirks,
      leaseTimeoutMs: 0,
      ...(upstreamQuirks ? {} : { faults: { serverErrorAfterCommitRate: 1, routes: ["poll"], limit: 1 } }),
    });
    cleanups.push(() => c.close());
    const prompt = upstreamQuirks ? "a lone \ud800 surrogate" : "an answer lost to a 500";
    const stuck = c.enqueue({ payload: { model: "tiny", prompt, max_tokens: 8 } });
    const m = await startMiner(c.url, "aitbc");
    await c.waitFor((x) => x.job(stuck)?.state === "FAILED", DEADLINE_MS);
    const error = c.job(stuck)?.error;
    expect(error?.code ?? error?.message.split(":")[0]).toBe("orphaned");
    expect(m.events().filter((e) => e["event"] === "poll_failed").length).toBeGreaterThanOrEqual(1);
    expect(named(m.events(), "job_orphaned", stuck)).toHaveLength(1);
    expect(named(m.events(), "job_started", stuck)).toEqual([]);
    const next = c.enqueue(short(1));
    await c.waitFor((x) => x.job(next)?.state === "COMPLETED", DEADLINE_MS);
    expect(await m.stop()).toBe(0);
    expect(c.jobs().filter((j) => j.state === "RUNNING")).toEqual([]);
  }, 240_000);
});
