// Reliability runs (DESIGN §7, issue 5). Their figures are written to test/.fixtures/reliability-*.json
// and summarised in the README's "Reliability" section.
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { LocalJob } from "../../src/coordinator/local/state.js";
import { type Spawned, spawnCli } from "./cli.js";
import {
  type CoordinatorProcess,
  enqueue,
  listJobs,
  rssKb,
  startCoordinatorProcess,
  stats,
} from "./coordinator-process.js";
import { API_KEY, modelsDir, repoRoot } from "./harness.js";
import { freePort } from "./proxy.js";

const JOBS = 300;
const RESTARTS = 4;

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

describe("chaos run", () => {
  it(`${JOBS} jobs through injected faults and ${RESTARTS} coordinator kills: each completed exactly once, memory flat`, async () => {
    const port = await freePort();
    const stateFile = join(mkdtempSync(join(tmpdir(), "chaos-coord-")), "state.json");
    const faults = {
      serverErrorRate: 0.05,
      resetRate: 0.03,
      slowRate: 0.02,
      slowMs: 1500,
      dropAfterCommitRate: 0.05,
      seed: 1234,
    };
    coordinator = await startCoordinatorProcess({ port, stateFile, faults });
    const ids: string[] = [];
    for (let i = 0; i < JOBS; i++) {
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
      ...["--state-dir", mkdtempSync(join(tmpdir(), "chaos-state-")), "--request-timeout", "1"],
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
    let nextKillAt = Date.now() + 2500;
    const deadline = Date.now() + 240_000;
    for (;;) {
      expect(Date.now(), "chaos run did not finish in 240 s").toBeLessThan(deadline);
      expect(miner.child.exitCode, miner.stderr().slice(-2000)).toBeNull();
      await new Promise((r) => setTimeout(r, 100));
      const jobs = await jobsWhenUp(coordinator.url);
      if (!jobs) continue;
      const done = jobs.filter((j) => j.state === "COMPLETED").length;
      if (warmRss === 0 && done >= 30) warmRss = rssKb(pid);
      if (done === JOBS) break;
      if (restarts < RESTARTS && Date.now() >= nextKillAt) {
        const s = (await stats(coordinator.url)) as { faults: Record<string, number> };
        for (const [k, v] of Object.entries(s.faults)) faultTotals[k] = (faultTotals[k] ?? 0) + v;
        await coordinator.kill();
        await new Promise((r) => setTimeout(r, 300));
        coordinator = await startCoordinatorProcess({
          port,
          stateFile,
          faults: { ...faults, seed: 1234 + restarts + 1 },
        });
        restarts++;
        nextKillAt = Date.now() + 2500;
      }
    }
    const endRss = rssKb(pid);
    const s = (await stats(coordinator.url)) as {
      faults: Record<string, number>;
      duplicateSubmissions: number;
    };
    for (const [k, v] of Object.entries(s.faults)) faultTotals[k] = (faultTotals[k] ?? 0) + v;
    const jobs = await listJobs(coordinator.url);
    miner.child.kill("SIGTERM");
    const exit = await miner.exit;

    const byId = new Map(jobs.map((j) => [j.jobId, j]));
    const lost = ids.filter((id) => byId.get(id)?.state !== "COMPLETED").length;
    const acceptedTwice = jobs.filter((j) => j.submissions > 1).length;
    report("chaos", {
      jobs: JOBS,
      completed: JOBS - lost,
      lost,
      duplicatesAccepted: acceptedTwice,
      duplicateSubmissionsRefused: jobs.reduce((n, j) => n + j.duplicateSubmissions, 0),
      coordinatorKills: restarts,
      faultsInjected: faultTotals,
      rssWarmKb: warmRss,
      rssEndKb: endRss,
      rssRatio: Number((endRss / warmRss).toFixed(3)),
    });
    expect(exit.code).toBe(0);
    expect(lost).toBe(0);
    expect(acceptedTwice).toBe(0);
    expect(restarts).toBe(RESTARTS);
    expect(faultTotals["serverError"] ?? 0).toBeGreaterThan(0);
    expect(faultTotals["dropAfterCommit"] ?? 0).toBeGreaterThan(0);
    expect(endRss / warmRss).toBeLessThanOrEqual(1.2);
  }, 300_000);
});
