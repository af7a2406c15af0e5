// Reliability runs (docs/architecture.md#durability-rules, issue 5). Their figures are written to test/.fixtures/reliability-*.json
// and summarised in the README's "Reliability" section.
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { LocalJob } from "../../src/local-coordinator/index.js";
import { type Spawned, spawnCli } from "../support/cli.js";
import {
  type CoordinatorProcess,
  enqueue,
  listJobs,
  rssKb,
  startCoordinatorProcess,
  stats,
} from "../support/coordinator-process.js";
import { API_KEY, modelsDir, repoRoot } from "../support/harness.js";
import { freePort } from "../support/proxy.js";

const RESTARTS = 4;
const FAULTS = {
  serverErrorRate: 0.05,
  resetRate: 0.03,
  slowRate: 0.02,
  slowMs: 1500,
  dropAfterCommitRate: 0.05,
  seed: 1234,
};

let coordinator: CoordinatorProcess | null = null;
let miner: Spawned | null = null;
afterEach(async () => {
  miner?.child.kill("SIGKILL");
  await coordinator?.kill();
  miner = null;
  coordinator = null;
});

function report(name: string, figures: Record<string, unknown>): void {
  const dir = join(repoRoot, "test", ".fixtures");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `reliability-${name}.json`), `${JSON.stringify(figures, null, 2)}\n`);
  process.stdout.write(`reliability ${name}: ${JSON.stringify(figures)}\n`);
}

async function jobsWhenUp(url: string): Promise<LocalJob[] | null> {
  try {
    return await listJobs(url);
  } catch {
    return null; // coordinator down right now
  }
}

interface ChaosRun {
  jobs: number;
  restarts: number;
  upstreamQuirks: boolean;
  /** Miner request timeout (s). */
  requestTimeout: number;
  /** Time between coordinator kills (ms): short enough for all kills to land before the end. */
  killEveryMs: number;
}

interface ChaosOutcome {
  ids: string[];
  jobs: LocalJob[];
  restarts: number;
  faultTotals: Record<string, number>;
  warmRss: number;
  endRss: number;
  exitCode: number | null;
}

/** Jobs through seeded faults and coordinator SIGKILLs until every job is COMPLETED. */
async function chaosRun(o: ChaosRun): Promise<ChaosOutcome> {
  const port = await freePort();
  const stateFile = join(mkdtempSync(join(tmpdir(), "chaos-coord-")), "state.json");
  const upstreamQuirks = o.upstreamQuirks;
  coordinator = await startCoordinatorProcess({ port, stateFile, faults: FAULTS, upstreamQuirks });
  const ids: string[] = [];
  for (let i = 0; i < o.jobs; i++) {
    ids.push(
      await enqueue(coordinator.url, {
        model: "tiny",
        prompt: `chaos ${i % 7}`,
        max_tokens: 2,
        temperature: 0,
      }),
    );
  }
  miner = spawnCli([
    "run",
    ...["--coordinator", coordinator.url, "--api-key", API_KEY, "--miner-id", "chaos-miner"],
    ...["--models", modelsDir, "--threads", "1", "--gpu", "cpu", "--concurrency", "4"],
    ...["--state-dir", mkdtempSync(join(tmpdir(), "chaos-state-"))],
    ...["--request-timeout", String(o.requestTimeout)],
    ...[
      "--polls-per-minute",
      "60000",
      "--long-poll",
      "0",
      "--heartbeat-interval",
      "1",
      "--log-level",
      "warn",
    ],
  ]);
  const pid = miner.child.pid!;
  let warmRss = 0;
  let restarts = 0;
  const faultTotals: Record<string, number> = {};
  let nextKillAt = Date.now() + o.killEveryMs;
  const deadline = Date.now() + 240_000;
  for (;;) {
    if (Date.now() >= deadline) {
      const jobs: LocalJob[] = (await jobsWhenUp(coordinator.url)) ?? [];
      const open: string[] = jobs.filter((j) => j.state !== "COMPLETED").map((j) => `${j.jobId}:${j.state}`);
      expect.fail(`chaos run did not finish in 240 s; not completed: ${open.join(" ")}`);
    }
    expect(miner.child.exitCode, miner.stderr().slice(-2000)).toBeNull();
    await new Promise((r) => setTimeout(r, 100));
    const jobs = await jobsWhenUp(coordinator.url);
    if (!jobs) continue;
    const done = jobs.filter((j) => j.state === "COMPLETED").length;
    if (warmRss === 0 && done >= 30) warmRss = rssKb(pid);
    if (done === o.jobs) break;
    if (restarts < o.restarts && Date.now() >= nextKillAt) {
      const s = (await stats(coordinator.url)) as { faults: Record<string, number> };
      for (const [k, v] of Object.entries(s.faults)) faultTotals[k] = (faultTotals[k] ?? 0) + v;
      await coordinator.kill();
      await new Promise((r) => setTimeout(r, 300));
      coordinator = await startCoordinatorProcess({
        port,
        stateFile,
        faults: { ...FAULTS, seed: 1234 + restarts + 1 },
        upstreamQuirks,
      });
      restarts++;
      nextKillAt = Date.now() + o.killEveryMs;
    }
  }
  const endRss = rssKb(pid);
  const s = (await stats(coordinator.url)) as { faults: Record<string, number> };
  for (const [k, v] of Object.entries(s.faults)) faultTotals[k] = (faultTotals[k] ?? 0) + v;
  const jobs = await listJobs(coordinator.url);
  miner.child.kill("SIGTERM");
  const exit = await miner.exit;
  return { ids, jobs, restarts, faultTotals, warmRss, endRss, exitCode: exit.code };
}

describe("chaos run", () => {
  it(`200 jobs through injected faults and ${RESTARTS} coordinator kills: each completed exactly once, memory flat`, async () => {
    const JOBS = 200;
    const r = await chaosRun({
      jobs: JOBS,
      restarts: RESTARTS,
      upstreamQuirks: false,
      requestTimeout: 1,
      killEveryMs: 2000,
    });
    const byId = new Map(r.jobs.map((j) => [j.jobId, j]));
    const lost = r.ids.filter((id) => byId.get(id)?.state !== "COMPLETED").length;
    const acceptedTwice = r.jobs.filter((j) => j.submissions > 1).length;
    report("chaos", {
      jobs: JOBS,
      completed: JOBS - lost,
      lost,
      duplicatesAccepted: acceptedTwice,
      duplicateSubmissionsRefused: r.jobs.reduce((n, j) => n + j.duplicateSubmissions, 0),
      coordinatorKills: r.restarts,
      faultsInjected: r.faultTotals,
      rssWarmKb: r.warmRss,
      rssEndKb: r.endRss,
      rssRatio: Number((r.endRss / r.warmRss).toFixed(3)),
    });
    expect(r.exitCode).toBe(0);
    expect(lost).toBe(0);
    expect(acceptedTwice).toBe(0);
    expect(r.restarts).toBe(RESTARTS);
    expect(r.faultTotals["serverError"] ?? 0).toBeGreaterThan(0);
    expect(r.faultTotals["dropAfterCommit"] ?? 0).toBeGreaterThan(0);
    expect(r.endRss / r.warmRss).toBeLessThanOrEqual(1.2);
  }, 300_000);

  // Upstream has no 409: a result whose answer was lost is accepted again with a new receipt, so
  // repeats are counted, not refused. The invariant left: every job ends COMPLETED, none lost.
  // The miner's request timeout stays above slowMs here: upstream has no lease, so a poll answer
  // the miner gave up on would leave its job RUNNING for good (an upstream property, not a miner bug).
  it(`upstream mode: 80 jobs through the same faults and ${RESTARTS} coordinator kills: none lost`, async () => {
    const JOBS = 80;
    const r = await chaosRun({
      jobs: JOBS,
      restarts: RESTARTS,
      upstreamQuirks: true,
      requestTimeout: 3,
      killEveryMs: 1000,
    });
    const byId = new Map(r.jobs.map((j) => [j.jobId, j]));
    const lost = r.ids.filter((id) => byId.get(id)?.state !== "COMPLETED").length;
    report("chaos-upstream", {
      jobs: JOBS,
      completed: JOBS - lost,
      lost,
      resubmissionsAccepted: r.jobs.reduce((n, j) => n + Math.max(0, j.submissions - 1), 0),
      jobsSubmittedMoreThanOnce: r.jobs.filter((j) => j.submissions > 1).length,
      coordinatorKills: r.restarts,
      faultsInjected: r.faultTotals,
      rssWarmKb: r.warmRss,
      rssEndKb: r.endRss,
    });
    expect(r.exitCode).toBe(0);
    expect(lost).toBe(0);
    expect(r.jobs).toHaveLength(JOBS);
    for (const j of r.jobs) expect(j, j.jobId).toMatchObject({ state: "COMPLETED", error: null });
    // Nothing refused: upstream never answers 409.
    expect(r.jobs.reduce((n, j) => n + j.duplicateSubmissions, 0)).toBe(0);
    expect(r.restarts).toBe(RESTARTS);
    expect(r.faultTotals["dropAfterCommit"] ?? 0).toBeGreaterThan(0);
  }, 300_000);
});
