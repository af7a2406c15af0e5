// Every GPU mines: on the fake NVML with 3 cards, `run` supervises one worker per card. Each
// registers as its own miner advertising its own card; a job for one card's name runs there; a
// worker SIGKILLed mid-job is restarted and its job delivered while the others go on; /metrics
// and /readyz speak for the whole host; SIGTERM drains all and exits 0.
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { fakeDevice } from "../fake-nvml/config.js";
import type { Spawned } from "../support/cli.js";
import { get, FLEET_GPU_NAMES as NAMES, startFleetHost, sum, until } from "../support/fleet.js";
import { coordinatorWithReceipts, inferenceJob } from "../support/harness.js";
import { freePort } from "../support/proxy.js";
import { storedKeys } from "../support/state-files.js";

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

describe("one worker per GPU", () => {
  it("three cards: three miners, per-card jobs, a killed worker restarted, host metrics, clean drain", {
    timeout: 180_000,
  }, async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const host = startFleetHost({ url: coordinator.url, port });
    miner = host;

    await until("the ops server", async () => ((await get(`${base}/healthz`)).status === 200 ? true : null));
    // Workers take seconds to start and register: until then the host is live but not ready.
    const early = await get(`${base}/readyz`);
    const earlyRegistered = coordinator.miners().length;
    await until("three registrations", () => (coordinator!.miners().length === 3 ? true : null));
    const miners = coordinator.miners().sort((a, b) => a.minerId.localeCompare(b.minerId));
    expect(miners.map((m) => m.minerId)).toEqual(["host-gpu0", "host-gpu1", "host-gpu2"]);
    for (const [i, m] of miners.entries()) {
      const gpus = (m.capabilities as { gpus: { name: string; uuid: string }[] }).gpus;
      expect(gpus).toEqual([expect.objectContaining({ name: NAMES[i], uuid: fakeDevice(i).uuid })]);
    }
    await until("readyz 200", async () => ((await get(`${base}/readyz`)).status === 200 ? true : null));
    if (earlyRegistered < 3) expect(early.status).toBe(503); // it flips once all are registered

    // A job for the L4 runs on the L4's worker.
    const l4 = coordinator.enqueue({ ...inferenceJob(1), constraints: { gpu: "NVIDIA L4" } });
    await coordinator.waitFor((c) => c.job(l4)!.state === "COMPLETED", 60_000);
    expect(coordinator.job(l4)!.minerId).toBe("host-gpu2");

    // SIGKILL the H100's worker once it has journaled and started a long job.
    const pids = new Map<string, number>();
    for (const line of miner.stderr().split("\n")) {
      const m = /"event":"worker_started".*"worker":"([^"]+)".*"pid":(\d+)/.exec(line);
      if (m) pids.set(m[1]!, Number(m[2]));
    }
    const victim = pids.get("host-gpu0")!;
    expect(victim).toBeGreaterThan(0);
    let killed = false;
    // Its claim is written while the job starts: kill once it is in the worker's journal.
    const journal = join(
      host.stateDir,
      "workers",
      String(fakeDevice(0).uuid).replace(/[^A-Za-z0-9._-]/g, "_"),
      "journal",
    );
    const journaled = () => storedKeys(journal).length > 0;
    miner.child.stderr!.on("data", (d: Buffer) => {
      const text = d.toString();
      if (!killed && text.includes(`"pid":${victim},`) && text.includes('"event":"job_started"')) {
        killed = true;
        const poll = setInterval(() => {
          if (!journaled()) return;
          clearInterval(poll);
          process.kill(victim, "SIGKILL");
        }, 5);
      }
    });
    const long = coordinator.enqueue({
      payload: { model: "tiny", prompt: "a long one", max_tokens: 480, temperature: 0 },
      constraints: { gpu: NAMES[0] },
    });
    const others = [1, 2, 3, 4, 5, 6].map((i) =>
      coordinator!.enqueue({ ...inferenceJob(i), constraints: { gpu: NAMES[1 + (i % 2)] } }),
    );
    const states = () => JSON.stringify([long, ...others].map((id) => coordinator!.job(id)!.state));
    await coordinator
      .waitFor((c) => others.every((id) => c.job(id)!.state === "COMPLETED"), 60_000)
      .catch((e: Error) => {
        throw new Error(`${e.message}: ${states()}\n${miner!.stderr().slice(-3000)}`);
      });
    await coordinator
      .waitFor((c) => c.job(long)!.state === "COMPLETED", 90_000)
      .catch((e: Error) => {
        throw new Error(`${e.message}: ${states()}\n${miner!.stderr().slice(-3000)}`);
      });
    expect(killed).toBe(true);
    expect(miner.stderr()).toContain('"event":"worker_died"');
    expect(coordinator.job(long)!.minerId).toBe("host-gpu0");

    // Metrics for the whole host: per-worker job counts that match the jobs run, per-GPU series.
    const metrics = await until("metrics with every completion", async () => {
      const t = (await get(`${base}/metrics`)).text;
      return sum(t, "aitbc_miner_jobs_total", { outcome: "completed" }) >= 8 ? t : null;
    });
    expect(sum(metrics, "aitbc_miner_jobs_total", { miner_id: "host-gpu2", outcome: "completed" })).toBe(
      1 + others.filter((_, i) => (i + 1) % 2 === 1).length,
    );
    expect(sum(metrics, "aitbc_miner_worker_restarts_total", { miner_id: "host-gpu0" })).toBe(1);
    for (const [i, name] of NAMES.entries()) {
      expect(metrics).toMatch(
        new RegExp(`DCGM_FI_DEV_FB_TOTAL\\{gpu="${i}",UUID="[^"]+",device="nvidia${i}",modelName="${name}"`),
      );
    }
    expect(metrics).toContain("aitbc_miner_job_duration_seconds_bucket");
    // What each worker computes on, one series each (gpu0's restart replaced its own, not added one).
    for (const [i, name] of NAMES.entries()) {
      const labels = { miner_id: `host-gpu${i}`, backend: "cuda", platform: "CUDA", device: name };
      expect(sum(metrics, "aitbc_miner_inference_backend_info", labels), name).toBe(1);
    }
    expect(sum(metrics, "aitbc_miner_inference_backend_info", {})).toBe(NAMES.length);
    // One label name for a GPU's UUID on every series, DCGM's: the miner's and the GPU's join.
    expect(metrics).not.toMatch(/\buuid="/);
    expect(metrics).toMatch(new RegExp(`aitbc_miner_jobs_total\\{gpu="2",UUID="${fakeDevice(2).uuid}"`));

    miner.child.kill("SIGTERM");
    const exit = await miner.exit;
    expect(exit.code).toBe(0);
    await coordinator.waitFor((c) => c.miners().length === 0, 60_000);
  });

  it("--gpus none keeps today's single worker: one miner, the plain id, CPU", async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    miner = startFleetHost({ url: coordinator.url, port: await freePort(), extra: ["--gpus", "none"] });
    const id = coordinator.enqueue(inferenceJob(1));
    await coordinator.waitFor((c) => c.job(id)!.state === "COMPLETED", 60_000);
    expect(coordinator.miners().map((m) => m.minerId)).toEqual(["host"]);
    expect(miner.stderr()).not.toContain("worker_started");
    miner.child.kill("SIGTERM");
    expect((await miner.exit).code).toBe(0);
  });

  it("--gpus 1: one card of three, one worker under the plain id, advertising that card only", async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    miner = startFleetHost({ url: coordinator.url, port: await freePort(), extra: ["--gpus", "1"] });
    await until("registration", () => (coordinator!.miners().length === 1 ? true : null));
    const m = coordinator.miners()[0]!;
    expect(m.minerId).toBe("host");
    expect((m.capabilities as { gpus: { name: string }[] }).gpus.map((g) => g.name)).toEqual([NAMES[1]]);
    miner.child.kill("SIGTERM");
    expect((await miner.exit).code).toBe(0);
  });
});
