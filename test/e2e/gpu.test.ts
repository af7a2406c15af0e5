// The miner on a GPU host, as far as this machine can show it: the real NVML addon over the fake
// libnvidia-ml drives registration capabilities, heartbeats and VRAM admission. This machine has no
// CUDA runtime, so node-llama-cpp starts on the CPU: the tests of GPU policy say
// AITBC_TEST_COMPUTE=nvml (take the fake cards as the runtime's devices; inference stays real), and
// the tests of truth in advertising run without it, as a driver-only host would.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { fakeDevice, writeFakeNvmlConfig } from "../fake-nvml/config.js";
import { fakeNvmlPaths } from "../setup/fake-nvml.js";
import { runCli, type Spawned, spawnCli } from "../support/cli.js";
import { API_KEY, coordinatorWithReceipts, inferenceJob, modelsDir, repoRoot } from "../support/harness.js";

let coordinator: LocalCoordinator | null = null;
let miner: Spawned | null = null;
afterEach(async () => {
  miner?.child.kill("SIGKILL");
  await coordinator?.close();
  miner = null;
  coordinator = null;
});

function startGpuMiner(
  url: string,
  devices: ReturnType<typeof fakeDevice>[],
  o: {
    computeAsNvml?: boolean;
    args?: string[];
    driver?: [string, number];
    env?: Record<string, string>;
  } = {},
): Spawned {
  const dir = mkdtempSync(join(tmpdir(), "gpu-miner-"));
  const [driver, cuda] = o.driver ?? ["550.54.15", 12040];
  const config = writeFakeNvmlConfig(join(dir, "fake-nvml.conf"), { driver, cuda, devices });
  return spawnCli(
    [
      "run",
      ...["--coordinator", url, "--api-key", API_KEY, "--miner-id", "gpu-miner", "--models", modelsDir],
      ...[
        "--threads",
        "1",
        "--gpu",
        "auto",
        "--state-dir",
        join(dir, "state"),
        "--polls-per-minute",
        "60000",
      ],
      // All cards as one worker (one group): the single-miner behaviour these tests describe.
      ...["--gpu-groups", devices.map((_, i) => i).join(",")],
      ...[
        "--heartbeat-interval",
        "1",
        "--nvml-library",
        fakeNvmlPaths(repoRoot).current,
        "--log-level",
        "info",
      ],
      ...(o.args ?? []),
    ],
    { FAKE_NVML_CONFIG: config, AITBC_TEST_COMPUTE: o.computeAsNvml === false ? "" : "nvml" },
  );
}

/** An H200 as NVML shows it on a CUDA 13.0 driver (580.x). */
const h200 = () => fakeDevice(0, { name: "NVIDIA H200", memTotalMiB: 143_771, cc: [9, 0] });

const final = (id: string) => (c: LocalCoordinator) =>
  ["COMPLETED", "FAILED"].includes(c.job(id)?.state ?? "");

describe("GPU host (fake NVML)", () => {
  it("advertises the GPUs NVML sees and sends their state in heartbeats", async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    let heartbeatMeta: unknown = null;
    coordinator.on((e) => {
      if (e.type === "heartbeat")
        heartbeatMeta = coordinator?.miners().find((m) => m.minerId === "gpu-miner")?.metadata ?? null;
    });
    const id = coordinator.enqueue(inferenceJob(1));
    miner = startGpuMiner(coordinator.url, [
      fakeDevice(0),
      fakeDevice(1, { name: "NVIDIA A100-SXM4-40GB", memTotalMiB: 40960 }),
    ]);
    await coordinator.waitFor(final(id), 60_000);
    await coordinator.waitFor(() => heartbeatMeta !== null, 60_000);
    const registered = coordinator.miners().find((m) => m.minerId === "gpu-miner")!;
    expect(registered.capabilities).toMatchObject({
      platform: "CUDA",
      cuda: "12.4",
      models: ["tiny"],
      gpus: [
        {
          name: "NVIDIA H100 80GB HBM3",
          memory_mb: 81559,
          uuid: fakeDevice(0).uuid,
          compute_capability: "9.0",
        },
        { name: "NVIDIA A100-SXM4-40GB", memory_mb: 40960, uuid: fakeDevice(1).uuid },
      ],
    });
    expect(heartbeatMeta).toMatchObject({
      gpu_source: "nvml",
      platform: "CUDA",
      inference: { backend: "cuda", devices: ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB"] },
      gpus: [
        expect.objectContaining({ uuid: fakeDevice(0).uuid }),
        expect.objectContaining({ uuid: fakeDevice(1).uuid }),
      ],
    });
    expect(coordinator.job(id)!.state).toBe("COMPLETED");
    expect(miner.stderr()).toContain('"source":"nvml"');
    miner.child.kill("SIGTERM");
    expect((await miner.exit).code).toBe(0);
  });

  it("refuses a job whose model does not fit in free VRAM, before loading it", async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    const id = coordinator.enqueue(inferenceJob(1));
    miner = startGpuMiner(coordinator.url, [
      fakeDevice(0, { memTotalMiB: 2048, memUsedMiB: 2000, memReservedMiB: 0 }),
    ]);
    await coordinator.waitFor(final(id), 60_000);
    const job = coordinator.job(id)!;
    expect(job.state).toBe("FAILED");
    expect(job.error?.code).toBe("insufficient_vram");
    expect(job.error?.message).toMatch(/MiB/);
    expect(miner.stderr()).not.toContain('"event":"model_loaded"');
    miner.child.kill("SIGTERM");
    expect((await miner.exit).code).toBe(0);
  });

  it("drains when the GPU is lost mid-run: the miner deregisters, takes no later job, and stays up for the undrain", async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    // ~20 device calls a snapshot: the GPU is lost after a few heartbeats.
    miner = startGpuMiner(coordinator.url, [fakeDevice(0, { lostAfter: 150 })]);
    const first = coordinator.enqueue(inferenceJob(1));
    await coordinator.waitFor(final(first), 60_000);
    expect(
      coordinator.job(first)!.state === "COMPLETED" ||
        coordinator.job(first)!.error?.code === "gpu_unavailable",
    ).toBe(true);
    // The host's health watch sees the card lost: its one miner drains (docs/gpu-health.md).
    await coordinator.waitFor((c) => c.miners().length === 0, 60_000);
    const drained = miner
      .stderr()
      .split("\n")
      .filter((l) => l.includes('"event":"gpu_drained"'));
    expect(drained).toHaveLength(1);
    expect(drained[0]).toMatch(/GPU 0 drained: .*lost/i);
    // Drained, it polls no more: a job enqueued now is still queued, and no poll came, after the
    // miner has had time for many (it polls every few ms when it mines).
    const polls = () => coordinator!.stats().byRoute["POST /v1/miners/poll"] ?? 0;
    const pollsAtDrain = polls();
    const later = coordinator.enqueue(inferenceJob(2));
    await new Promise((r) => setTimeout(r, 1500));
    expect(coordinator.job(later)!.state).toBe("QUEUED");
    expect(polls()).toBe(pollsAtDrain);
    expect(miner.child.exitCode, miner.stderr().slice(-3000)).toBeNull(); // alive: it waits for the card to be undrained
    miner.child.kill("SIGTERM");
    expect((await miner.exit).code).toBe(0);
  });
});

describe("truth in advertising: NVML sees a GPU, the runtime computes on the CPU", () => {
  it("run refuses to mine (exit 69), names the missing libraries, registers nothing", async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    const id = coordinator.enqueue(inferenceJob(1));
    miner = startGpuMiner(coordinator.url, [h200()], { computeAsNvml: false, driver: ["580.65.06", 13000] });
    const exit = await miner.exit;
    expect(exit.code).toBe(69);
    const fatal = miner
      .stderr()
      .split("\n")
      .filter((l) => l.includes('"event":"gpu_unusable"'));
    expect(fatal).toHaveLength(1);
    const msg = String(JSON.parse(fatal[0]!).msg);
    expect(msg).toMatch(/NVML sees 1 GPU \(NVIDIA H200\) but node-llama-cpp started on the CPU/);
    expect(msg).toMatch(/lib(cudart|cublas|cublasLt|cuda)\.so\.\d+/);
    expect(msg).toMatch(/not found by the loader/);
    expect(msg).toContain("--allow-cpu-inference");
    expect(coordinator.miners()).toHaveLength(0);
    expect(coordinator.job(id)!.state).toBe("QUEUED");
  });

  it("--allow-cpu-inference mines on the CPU and advertises no GPU, in registration and heartbeats", async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    let heartbeatMeta: Record<string, unknown> | null = null;
    coordinator.on((e) => {
      if (e.type === "heartbeat")
        heartbeatMeta =
          (coordinator?.miners().find((m) => m.minerId === "gpu-miner")?.metadata as Record<
            string,
            unknown
          >) ?? null;
    });
    const id = coordinator.enqueue(inferenceJob(1));
    miner = startGpuMiner(coordinator.url, [h200()], {
      computeAsNvml: false,
      args: ["--allow-cpu-inference"],
    });
    await coordinator.waitFor(final(id), 60_000);
    await coordinator.waitFor(() => heartbeatMeta !== null, 60_000);
    expect(coordinator.job(id)!.state).toBe("COMPLETED");
    const registered = coordinator.miners().find((m) => m.minerId === "gpu-miner")!;
    expect(registered.capabilities).toMatchObject({ platform: "CPU", gpus: [], cuda: null });
    expect(heartbeatMeta).toMatchObject({
      platform: "CPU",
      gpus: [],
      inference: { backend: "cpu", devices: [] },
    });
    const note = miner
      .stderr()
      .split("\n")
      .find((l) => l.includes('"event":"inference_runtime"'));
    expect(note).toContain('"level":"warn"');
    expect(note).toContain("--allow-cpu-inference");
    miner.child.kill("SIGTERM");
    expect((await miner.exit).code).toBe(0);
  });

  it("doctor and telemetry --inference give run's verdict in run's words, and accept the opt-in", async () => {
    const dir = mkdtempSync(join(tmpdir(), "gpu-doctor-"));
    const config = writeFakeNvmlConfig(join(dir, "fake-nvml.conf"), {
      driver: "580.65.06",
      cuda: 13000,
      devices: [h200()],
    });
    const args = ["doctor", "--json", "--nvml-library", fakeNvmlPaths(repoRoot).current, "--state-dir", dir];
    const env = { FAKE_NVML_CONFIG: config, AITBC_ALLOW_CPU_INFERENCE: "" };
    const inference = (stdout: string) =>
      (
        JSON.parse(stdout) as { checks: { name: string; status: string; detail: string; fix?: string }[] }
      ).checks.find((c) => c.name === "inference");
    const refused = await runCli(args, env);
    expect(refused.code).toBe(1);
    const bad = inference(refused.stdout)!;
    expect(bad.status).toBe("fail");
    expect(bad.detail).toMatch(/NVML sees 1 GPU \(NVIDIA H200\) but node-llama-cpp started on the CPU/);
    expect(bad.detail).toMatch(/lib(cudart|cublas|cublasLt|cuda)\.so\.\d+/);
    expect(bad.fix).toMatch(/exit 69/);
    const allowed = await runCli([...args, "--allow-cpu-inference"], env);
    const ok = inference(allowed.stdout)!;
    expect(ok.status).toBe("warn");
    expect(ok.detail).toMatch(/computes on CPU.*not advertised/);

    // telemetry --inference says the same, from the same check.
    const tArgs = ["telemetry", "--json", "--inference", "--nvml-library", fakeNvmlPaths(repoRoot).current];
    const t = JSON.parse((await runCli(tArgs, env)).stdout) as { inference: Record<string, unknown> };
    expect(t.inference).toMatchObject({
      platform: null,
      backend: "cpu",
      advertisesGpus: false,
      refusal: { code: "gpu_runtime_missing", message: bad.detail },
    });
    const tAllowed = JSON.parse((await runCli(tArgs, { ...env, AITBC_ALLOW_CPU_INFERENCE: "1" })).stdout) as {
      inference: Record<string, unknown>;
    };
    expect(tAllowed.inference).toMatchObject({
      platform: "CPU",
      backend: "cpu",
      advertisesGpus: false,
      refusal: null,
    });
  });
});
