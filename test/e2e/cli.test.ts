import { chmodSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { version } from "../../src/version.js";
import { runCli, spawnCli } from "../support/cli.js";
import { API_KEY, coordinatorWithReceipts, modelsDir } from "../support/harness.js";

let coordinator: LocalCoordinator | null = null;
afterEach(async () => {
  await coordinator?.close();
  coordinator = null;
});

describe("command line", () => {
  it("prints the version and documents every command and run flag", async () => {
    expect((await runCli(["--version"])).stdout.trim()).toBe(version);
    const help = await runCli(["--help"]);
    expect(help.code).toBe(0);
    for (const c of [
      "run",
      "demo",
      "telemetry",
      "keys",
      "verify",
      "receipts",
      "earnings",
      "doctor",
      "service",
      "coordinator",
      "bench",
    ]) {
      expect(help.stdout).toContain(c);
    }
    const runHelp = await runCli(["run", "--help"]);
    for (const f of [
      "--coordinator",
      "--api-key",
      "--miner-id",
      "--protocol",
      "--backend",
      "--models",
      "--model-map",
      "--ollama-url",
      "--concurrency",
      "--threads",
      "--state-dir",
      "--log-level",
      "--config",
    ]) {
      expect(runHelp.stdout).toContain(f);
    }
  });

  it.each([
    [["run", "--bogus"], /unknown option '--bogus'/],
    [["run", "--coordinator", "nope", "--api-key", "k", "--models", "."], /--coordinator: must be an http/],
    [
      ["run", "--coordinator", "http://127.0.0.1:1", "--models", "."],
      /an API key is required for --protocol aitbc/,
    ],
    [["run", "--coordinator", "http://127.0.0.1:1", "--api-key", "k"], /--models is required/],
    [
      ["run", "--coordinator", "http://127.0.0.1:1", "--api-key", "k", "--models", "/no/such/dir"],
      /--models: \/no\/such\/dir is not an existing directory/,
    ],
  ])("%j exits 2 with one clear line", async (args, message) => {
    const r = await runCli(args, { AITBC_API_KEY: "", AITBC_COORDINATOR: "", AITBC_MODELS: "" });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split("\n").length).toBeLessThanOrEqual(2);
  });
});

describe("service", () => {
  it("prints a systemd unit that restarts the miner and keeps the API key out of it", async () => {
    const r = await runCli(["service", "--user", "miner", "--grace-period", "45"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ExecStart=\S+node\S* \S+aitbc-native-miner\.js run --grace-period 45$/m);
    expect(r.stdout).toContain("User=miner");
    expect(r.stdout).toContain("EnvironmentFile=/etc/aitbc-native-miner.env");
    expect(r.stdout).toContain("Restart=always");
    expect(r.stdout).toContain("KillSignal=SIGTERM");
    // grace 45 + outbox flush 10 + 15 s margin
    expect(r.stdout).toContain("TimeoutStopSec=88"); // 45 s grace + the rest of the stop budget (33 s) + 10 s
    expect(r.stdout).toContain("LoadCredential=aitbc-api-key:/etc/aitbc-native-miner/api-key");
    expect(r.stdout).not.toMatch(/API_KEY=/);
  });
});

describe("signing key", () => {
  it("run refuses a key file that others can read, says how to fix it, exit 2", async () => {
    const stateDir = mkdtempSync(join(tmpdir(), "key-perm-"));
    expect((await runCli(["keys", "generate", "--state-dir", stateDir])).code).toBe(0);
    const keyFile = join(stateDir, "miner-key.json");
    chmodSync(keyFile, 0o644);
    const r = await runCli([
      "run",
      "--coordinator",
      "http://127.0.0.1:9",
      "--api-key",
      "k",
      "--models",
      modelsDir,
      "--state-dir",
      stateDir,
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`chmod 600 ${keyFile}`);
  });
});

describe("bench", () => {
  it("measures one-at-a-time and batched throughput side by side", async () => {
    const r = await runCli([
      "bench",
      "--models",
      modelsDir,
      "--jobs",
      "2",
      "--concurrency",
      "2",
      "--max-tokens",
      "4",
      "--threads",
      "1",
      "--gpu",
      "cpu",
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(result).toMatchObject({
      model: "tiny",
      jobs: 2,
      concurrency: 2,
      gpuSource: "none",
      gpuSnapshotUs: null,
    });
    expect(result["sequentialTokensPerS"]).toBeGreaterThan(0);
    expect(result["batchedOverSequential"]).toBeGreaterThan(0);
  });
});

describe("SIGTERM", () => {
  async function startJobThenSignal(gracePeriod: number) {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    const id = coordinator.enqueue({
      payload: { model: "tiny", prompt: "a long story", max_tokens: 400, temperature: 0 },
    });
    const miner = spawnCli([
      "run",
      "--coordinator",
      coordinator.url,
      "--api-key",
      API_KEY,
      "--miner-id",
      "sig-miner",
      "--models",
      modelsDir,
      "--threads",
      "1",
      "--gpu",
      "cpu",
      "--grace-period",
      String(gracePeriod),
      "--state-dir",
      mkdtempSync(join(tmpdir(), "sig-state-")),
      "--log-level",
      "info",
    ]);
    await coordinator.waitFor((c) => c.job(id)?.state !== "QUEUED", 60_000);
    // In flight means started by the miner: SIGTERM aborts a poll whose answer has not arrived.
    const until = Date.now() + 30_000;
    while (!miner.stderr().includes('"event":"job_started"') && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 10));
    }
    miner.child.kill("SIGTERM");
    const exit = await miner.exit;
    return { id, exit, stderr: miner.stderr() };
  }

  it("finishes the in-flight job within the grace period, deregisters and exits 0", async () => {
    const { id, exit, stderr } = await startJobThenSignal(30);
    expect(exit.code, stderr).toBe(0);
    const job = coordinator!.job(id)!;
    expect(job.state).toBe("COMPLETED");
    expect(stderr).toContain('"event":"shutdown"');
    expect(coordinator!.miners().find((m) => m.minerId === "sig-miner")).toBeUndefined();
  });

  it("with no grace period fails the job as shutting_down so it is requeued, and exits 0", async () => {
    const { id, exit, stderr } = await startJobThenSignal(0);
    expect(exit.code, stderr).toBe(0);
    const job = coordinator!.job(id)!;
    expect(["QUEUED", "COMPLETED"]).toContain(job.state);
    if (job.state === "QUEUED") expect(job.error?.code).toBe("shutting_down");
  });
});
