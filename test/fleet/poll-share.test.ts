// One poll budget per host: upstream limits polls per client IP in a sliding window counted by
// arrival, so the three workers of a 3-GPU host share one budget, which the supervisor grants.
// Against the local coordinator in upstream mode with a reduced window (20 polls per 5 s, the
// miner told the same), the host polls for several windows, jobs trickling in: no poll is ever
// refused, the host spends most of its share (it never went quiet), and jobs are picked up
// within a fraction of the window. Each worker spending its own budget would draw 429s at once.
import { afterEach, describe, expect, it } from "vitest";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { POLL_WINDOW_ENV } from "../../src/miner/poll-settings.js";
import type { Spawned } from "../support/cli.js";
import { startFleetHost, until } from "../support/fleet.js";
import { coordinatorWithReceipts, inferenceJob } from "../support/harness.js";

let coordinator: LocalCoordinator | null = null;
let miner: Spawned | null = null;
afterEach(async () => {
  if (miner && miner.child.exitCode === null) {
    miner.child.kill("SIGTERM");
    await miner.exit;
  }
  await coordinator?.close();
  miner = null;
  coordinator = null;
});

const POLL = "POST /v1/miners/poll";
const WINDOW_MS = 5000;
const LIMIT = 20;
/** What the host may spend per window: the limit less the margin (src/miner/poll-budget.ts). */
const SHARE = 18;

describe("the host's poll budget", () => {
  it("three workers behind one IP: no 429 over several windows, the share spent, jobs picked up promptly", {
    timeout: 240_000,
  }, async () => {
    coordinator = (
      await coordinatorWithReceipts({
        upstreamQuirks: true,
        rateLimits: { register: 1000, heartbeat: 1000, poll: LIMIT, result: 1000, windowMs: WINDOW_MS },
      })
    ).coordinator;
    const c = coordinator;
    let refused = 0;
    const assignedAt = new Map<string, number>();
    const assignedTo = new Set<string>();
    c.on((e) => {
      if (e.type === "rate_limited" && e.route === "poll") refused++;
      if (e.type === "assigned") {
        assignedAt.set(e.jobId, performance.now());
        assignedTo.add(e.minerId);
      }
    });
    miner = startFleetHost({
      url: c.url,
      pollsPerMinute: LIMIT,
      env: { [POLL_WINDOW_ENV]: String(WINDOW_MS) },
    });
    const host = miner;
    const polls = () => c.stats().byRoute[POLL] ?? 0;
    await until("three registrations", () => (c.miners().length === 3 ? true : null));
    // Every worker warm and polling: one job each, run on three different workers.
    const warm = [1, 2, 3].map((i) => c.enqueue(inferenceJob(i)));
    await c
      .waitFor((x) => warm.every((id) => x.job(id)!.state === "COMPLETED"), 60_000)
      .catch((e: Error) => {
        throw new Error(`${e.message}\n${host.stderr().slice(-3000)}`);
      });

    // Three windows, a job every 1.25 s: the host idles between jobs and polls all the while.
    const pollsBefore = polls();
    const t0 = performance.now();
    const enqueuedAt = new Map<string, number>();
    for (let i = 0; i < 12; i++) {
      const id = c.enqueue(inferenceJob(10 + i));
      enqueuedAt.set(id, performance.now());
      await new Promise((r) => setTimeout(r, WINDOW_MS / 4));
    }
    const ids = [...enqueuedAt.keys()];
    await c.waitFor((x) => ids.every((id) => x.job(id)!.state === "COMPLETED"), 60_000);
    const elapsed = performance.now() - t0;
    const spent = polls() - pollsBefore;

    expect(refused).toBe(0);
    // Never over the limit: counted by the coordinator itself (no 429), and here by arrivals.
    expect(spent).toBeLessThanOrEqual(Math.ceil((elapsed / WINDOW_MS) * LIMIT) + LIMIT);
    // The host spent most of its share: it polled all along rather than going quiet.
    expect(spent).toBeGreaterThanOrEqual(((elapsed / WINDOW_MS) * SHARE) / 2);
    // More than one worker took jobs: the grants go round.
    expect(assignedTo.size).toBeGreaterThan(1);
    // Picked up promptly: a host held off by a 429 would wait out a whole window.
    const waits = ids.map((id) => assignedAt.get(id)! - enqueuedAt.get(id)!).sort((a, b) => a - b);
    expect(waits[Math.floor(waits.length / 2)]!).toBeLessThan(WINDOW_MS / 2);
    expect(host.stderr()).not.toContain('"event":"poll_rate_limited"');

    host.child.kill("SIGTERM");
    expect((await host.exit).code).toBe(0);
  });
});
