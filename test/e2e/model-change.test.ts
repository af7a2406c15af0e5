// A model file truncated under `run` (issue 18, item 4; an operator copying a new version over it):
// the miner keeps running, the job it was computing finishes from the weights in memory, the next
// job for the model fails with the scan's reason, nothing is left RUNNING, and the coordinator is
// told the model is no longer served. The real CLI as a child process, the local coordinator.
import { mkdtempSync, statSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { writeTinyGguf } from "../../src/backends/tiny-gguf.js";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { type Spawned, spawnCli } from "../support/cli.js";
import { API_KEY, coordinatorWithReceipts, inferenceJob } from "../support/harness.js";

let coordinator: LocalCoordinator | null = null;
let miner: Spawned | null = null;
afterEach(async () => {
  miner?.child.kill("SIGKILL");
  await coordinator?.close();
  miner = null;
  coordinator = null;
});

const events = (m: Spawned) =>
  m
    .stderr()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as { event?: string; reason?: string });

/** Wait for `pred` with a generous deadline; a miner that exits meanwhile fails the wait at once. */
async function waitOn(m: Spawned, what: string, pred: (c: LocalCoordinator) => boolean): Promise<void> {
  const end = performance.now() + 180_000;
  while (!pred(coordinator!)) {
    const { exitCode, signalCode } = m.child;
    const gone = exitCode !== null || signalCode !== null;
    if (gone || performance.now() > end) {
      const seen = events(m)
        .map((e) => e.event)
        .join(",");
      throw new Error(
        `${gone ? `the miner exited (${exitCode ?? signalCode})` : "timed out"} waiting for ${what}; miner events: ${seen}`,
      );
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("a model file truncated under a running miner", () => {
  it("keeps mining: the running job completes, the next fails with the reason, the model is no longer advertised", async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    const models = mkdtempSync(join(tmpdir(), "model-change-e2e-"));
    const path = join(models, "tiny.gguf");
    writeTinyGguf(path, { name: "tiny", seed: 101, ctx: 8192 }); // room for a job that takes a while
    const m = spawnCli([
      "run",
      ...["--coordinator", coordinator.url, "--api-key", API_KEY, "--miner-id", "model-change-miner"],
      ...["--models", models, "--threads", "1", "--gpu", "cpu", "--context-size", "8192"],
      ...["--state-dir", mkdtempSync(join(tmpdir(), "model-change-state-")), "--log-level", "debug"],
      ...["--heartbeat-interval", "1", "--polls-per-minute", "60000", "--long-poll", "0"],
    ]);
    miner = m;
    const caps = (c: LocalCoordinator) =>
      (c.miners()[0]?.capabilities as { models?: string[] } | undefined)?.models ?? null;
    await waitOn(m, "registration with the model", (c) => caps(c)?.includes("tiny") === true);

    const long = coordinator.enqueue(inferenceJob(1, { max_tokens: 2000 }));
    // Generating, not only started: a file truncated before the job checked it out fails that job.
    await waitOn(m, "the job to generate", () => events(m).some((e) => e.event === "generation_started"));
    expect(coordinator.job(long)!.state).toBe("RUNNING");
    truncateSync(path, Math.floor(statSync(path).size / 2));
    await waitOn(m, "the running job to end", (c) => c.job(long)!.state !== "RUNNING");
    expect(coordinator.job(long)!.state).toBe("COMPLETED");

    const next = coordinator.enqueue(inferenceJob(2));
    await waitOn(
      m,
      "the next job to fail or the model to be withdrawn",
      (c) => c.job(next)!.state === "FAILED" || caps(c)?.length === 0,
    );
    await waitOn(m, "the model to be withdrawn", (c) => caps(c)?.length === 0);
    const job = coordinator.job(next)!;
    if (job.state === "FAILED") {
      expect(job.error?.code).toBe("model_not_found");
      expect(job.error?.message).toMatch(/truncated: /);
    } else {
      expect(job.state).toBe("QUEUED"); // withdrawn by the rescan first: never taken
    }
    expect(coordinator.jobs().filter((j) => j.state === "RUNNING")).toEqual([]);
    expect(m.child.exitCode).toBeNull(); // still running (a SIGBUS would have ended it with 135)
    expect(events(m).filter((e) => e.event === "model_skipped")[0]?.reason).toMatch(/^truncated: /);

    m.child.kill("SIGTERM");
    expect((await m.exit).code).toBe(0);
  }, 600_000);
});
