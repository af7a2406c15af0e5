// `status` on a one-miner host (no supervisor): GET /status from the miner's own events, the
// command's table, and its verdict once jobs ran; `gpu drain` there says there is no card to drain.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { runCli, type Spawned, spawnCli } from "../support/cli.js";
import { get, until } from "../support/fleet.js";
import { API_KEY, coordinatorWithReceipts, inferenceJob, modelsDir } from "../support/harness.js";
import { freePort } from "../support/proxy.js";

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

describe("status on a one-miner host", () => {
  it("says why it gets jobs or none, from the miner's own events", { timeout: 180_000 }, async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    const port = await freePort();
    miner = spawnCli([
      "run",
      ...["--coordinator", coordinator.url, "--api-key", API_KEY, "--miner-id", "solo"],
      ...["--models", modelsDir, "--threads", "1", "--gpu", "cpu", "--metrics-port", String(port)],
      ...["--state-dir", mkdtempSync(join(tmpdir(), "status-state-"))],
      ...["--polls-per-minute", "60000", "--long-poll", "0", "--heartbeat-interval", "1"],
    ]);
    await until("readyz 200", async () =>
      (await get(`http://127.0.0.1:${port}/readyz`)).status === 200 ? true : null,
    );
    await until("a few empty polls", async () => {
      const s = JSON.parse((await get(`http://127.0.0.1:${port}/status`)).text || "{}");
      return s.workers?.[0]?.emptyPolls >= 3 ? s : null;
    });
    const idle = await runCli(["status", "--metrics-port", String(port)]);
    expect(idle.code).toBe(0);
    expect(idle.stdout).toMatch(
      /^solo \(GPU cpu\): the coordinator had no work for your models in \d+ polls$/m,
    );

    const jobs = [1, 2].map((i) => coordinator!.enqueue(inferenceJob(i)));
    await until("both jobs completed", () =>
      jobs.every((id) => coordinator!.job(id)?.state === "COMPLETED") ? true : null,
    );
    await until("both results counted", async () => {
      const r = await runCli(["status", "--json", "--metrics-port", String(port)]);
      const s = JSON.parse(r.stdout) as { workers: { completed: number; results: Record<string, number> }[] };
      return s.workers[0]!.completed === 2 && s.workers[0]!.results["accepted"] === 2 ? true : null;
    });
    const busy = await runCli(["status", "--metrics-port", String(port)]);
    expect(busy.stdout).toContain("solo (GPU cpu): mining: 2 jobs completed, 2 results accepted in 10 min");
    expect(busy.stdout).toMatch(/^last 10 min: mining$/m);

    const drain = await runCli(["gpu", "drain", "0", "--metrics-port", String(port)]);
    expect(drain.code).toBe(1);
    expect(drain.stderr).toBe("gpu drain: this miner has no GPU to drain (a CPU host or --gpus none)\n");
    const nobody = await runCli(["status", "--metrics-port", String(await freePort())]);
    expect(nobody.code).toBe(1);
    expect(nobody.stderr).toMatch(/^no miner answers at http:\/\/127\.0\.0\.1:\d+ /);
  });
});
