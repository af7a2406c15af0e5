// Crash run (issue 5): SIGKILL the miner at its worst moments and start it again on the same state.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { type Spawned, spawnCli } from "../support/cli.js";
import { API_KEY, coordinatorWithReceipts, modelsDir } from "../support/harness.js";
import { type FaultProxy, startFaultProxy } from "../support/proxy.js";
import { storedKeys } from "../support/state-files.js";

let coordinator: LocalCoordinator | null = null;
let proxy: FaultProxy | null = null;
const miners: Spawned[] = [];
afterEach(async () => {
  for (const m of miners) m.child.kill("SIGKILL");
  miners.length = 0;
  await proxy?.close();
  await coordinator?.close();
  proxy = null;
  coordinator = null;
});

function events(m: Spawned): { event?: string; count?: number; jobId?: string }[] {
  return m
    .stderr()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as { event?: string });
}

async function until(cond: () => boolean, ms: number, what: string, m?: Spawned): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end)
      throw new Error(
        `timed out waiting for ${what}: ${
          m
            ?.stderr()
            .split("\n")
            .filter((l) => l.includes("event"))
            .map((l) => /"event":"(\w+)"/.exec(l)?.[1])
            .join(",") ?? ""
        }`,
      );
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Wait on the coordinator; on time-out, say what the miner was doing. */
async function waitOn(
  m: Spawned,
  what: string,
  pred: (c: LocalCoordinator) => boolean,
  ms: number,
): Promise<void> {
  try {
    await coordinator!.waitFor(pred, ms);
  } catch {
    const seen = events(m)
      .map((e) => e.event)
      .join(",");
    throw new Error(`timed out waiting for ${what}; miner events: ${seen}`);
  }
}

/** Whether the claim journal holds this job. */
function journaled(stateDir: string, jobId: string): boolean {
  return storedKeys(join(stateDir, "journal")).includes(jobId);
}

describe("crash run", () => {
  it("results computed before a SIGKILL are submitted after restart; claimed jobs are rerun or failed; none lost or doubled", async () => {
    coordinator = (await coordinatorWithReceipts({ leaseTimeoutMs: 0 })).coordinator;
    // Phase 1: results cannot be submitted (503), so they can only live in the outbox.
    proxy = await startFaultProxy(coordinator.url, [{ route: /\/result$/, times: 1e9, status: 503 }]);
    const stateDir = mkdtempSync(join(tmpdir(), "crash-state-"));
    const start = (extra: string[] = []) => {
      const m = spawnCli([
        "run",
        ...[
          "--coordinator",
          proxy!.url,
          "--api-key",
          API_KEY,
          "--miner-id",
          "crash-miner",
          "--models",
          modelsDir,
        ],
        ...[
          "--threads",
          "1",
          "--gpu",
          "cpu",
          "--state-dir",
          stateDir,
          "--polls-per-minute",
          "60000",
          "--long-poll",
          "0",
        ],
        ...["--request-timeout", "2", "--log-level", "info", ...extra],
      ]);
      miners.push(m);
      return m;
    };
    const short = Array.from({ length: 5 }, (_, i) =>
      coordinator!.enqueue({
        payload: { model: "tiny", prompt: `short ${i}`, max_tokens: 4, temperature: 0 },
      }),
    );
    // The coordinator hands out no more than `concurrency` unfinished jobs: take all five at once.
    const m1 = start(["--concurrency", "5"]);
    await until(
      () => events(m1).filter((e) => e.event === "job_completed").length === 5,
      60_000,
      "5 results in the outbox",
      m1,
    );
    m1.child.kill("SIGKILL");
    await m1.exit;
    for (const id of short) expect(coordinator.job(id)!.state).toBe("RUNNING");

    // Phase 2: the coordinator answers again; a long job is claimed and the miner killed mid-run.
    proxy.clear();
    const long1 = coordinator.enqueue({
      payload: { model: "tiny", prompt: "a long one", max_tokens: 480, temperature: 0 },
    });
    const m2 = start();
    await waitOn(
      m2,
      "outbox resubmitted",
      (c) => short.every((id) => c.job(id)?.state === "COMPLETED"),
      60_000,
    );
    expect(events(m2).find((e) => e.event === "outbox_recovered")?.count).toBe(5);
    // Kill once the claim is journaled (it is written while the job starts): before that, only
    // the coordinator's lease can help.
    await until(
      () =>
        events(m2).some((e) => e.event === "job_started" && e.jobId === long1) && journaled(stateDir, long1),
      60_000,
      "long1 started",
      m2,
    );
    m2.child.kill("SIGKILL");
    await m2.exit;

    // Phase 3: the restarted miner finds the claim in its journal and runs it again.
    const m3 = start(["--job-timeout", "8"]);
    await waitOn(m3, "long1 completed", (c) => c.job(long1)?.state === "COMPLETED", 60_000);
    const resumed = events(m3).some((e) => e.event === "job_resumed" && e.jobId === long1);
    const finishedBeforeKill = events(m2).some((e) => e.event === "job_completed" && e.jobId === long1);
    expect(resumed || finishedBeforeKill).toBe(true);

    // Phase 4: a claim whose deadline passes while the miner is down is failed as miner_restarted,
    // requeued by the coordinator, and mined again.
    const long2 = coordinator.enqueue({
      payload: { model: "tiny", prompt: "another long one", max_tokens: 480, temperature: 0 },
    });
    await until(
      () =>
        events(m3).some((e) => e.event === "job_started" && e.jobId === long2) && journaled(stateDir, long2),
      60_000,
      "long2 started",
      m3,
    );
    m3.child.kill("SIGKILL");
    await m3.exit;
    await new Promise((r) => setTimeout(r, 8500)); // m3's 8 s deadline for long2 passes while it is down
    const m4 = start();
    await waitOn(m4, "long2 completed", (c) => c.job(long2)?.state === "COMPLETED", 60_000);
    // Unless m3 finished long2 in the instant before the kill, m4 must have expired and requeued it.
    if (!events(m3).some((e) => e.event === "job_completed" && e.jobId === long2)) {
      expect(events(m4).some((e) => e.event === "job_expired_on_restart" && e.jobId === long2)).toBe(true);
      expect(coordinator.job(long2)!.attempts).toBe(2);
    }
    m4.child.kill("SIGTERM");
    expect((await m4.exit).code).toBe(0);

    const all = [...short, long1, long2].map((id) => coordinator!.job(id)!);
    for (const j of all) {
      expect(j.state).toBe("COMPLETED");
      expect(j.submissions).toBe(1);
    }
    expect(coordinator.jobs().filter((j) => j.state === "RUNNING")).toEqual([]);
  }, 240_000);
});
