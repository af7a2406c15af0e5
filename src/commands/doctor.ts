// `doctor`: what works on this host, what is missing, and what to do about it. Read-only.
import { accessSync, constants, existsSync, statSync } from "node:fs";
import type { Command } from "commander";
import { createCoordinatorClient } from "../coordinator/client.js";
import { createGpuInfoSource, loadAddon } from "../gpu/index.js";
import { silentLogger } from "../log.js";
import { defaultStateDir, stateFiles } from "../paths.js";
import { loadKeyFile } from "../receipts/index.js";
import { version } from "../version.js";

type Status = "ok" | "warn" | "fail";
interface Check {
  name: string;
  status: Status;
  detail: string;
  fix?: string | undefined;
}

interface DoctorOptions {
  coordinator?: string;
  apiKey?: string;
  models?: string;
  stateDir: string;
  nvmlLibrary?: string;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command("doctor")
    .description("check this host: Node, NVML/GPU, inference runtime, models, state, keys, coordinator")
    .option(
      "--coordinator <URL>",
      "also check that this coordinator answers",
      process.env["AITBC_COORDINATOR"],
    )
    .option("--api-key <KEY>", "API key for the coordinator check", process.env["AITBC_API_KEY"])
    .option("--models <DIR>", "models directory to inspect", process.env["AITBC_MODELS"])
    .option("--state-dir <DIR>", "state directory", process.env["AITBC_STATE_DIR"] || defaultStateDir())
    .option("--nvml-library <PATH>", "path of libnvidia-ml.so.1", process.env["AITBC_NVML_LIBRARY"])
    .option("--json", "machine-readable output")
    .action(async (opts: DoctorOptions) => {
      const checks = await runChecks(opts);
      if (opts.json) process.stdout.write(`${JSON.stringify({ version, checks }, null, 2)}\n`);
      else {
        const mark: Record<Status, string> = { ok: "✔", warn: "!", fail: "✘" };
        process.stdout.write(`aitbc-native-miner ${version} doctor\n`);
        for (const c of checks) {
          process.stdout.write(`${mark[c.status]} ${c.name.padEnd(12)} ${c.detail}\n`);
          if (c.fix && c.status !== "ok") process.stdout.write(`  → ${c.fix}\n`);
        }
      }
      process.exitCode = checks.some((c) => c.status === "fail") ? 1 : 0;
    });
}

async function runChecks(opts: DoctorOptions): Promise<Check[]> {
  const checks: Check[] = [];
  const [major = 0, minor = 0] = process.versions.node.split(".").map(Number);
  checks.push(
    major > 20 || (major === 20 && minor >= 18)
      ? { name: "node", status: "ok", detail: `Node ${process.versions.node}` }
      : {
          name: "node",
          status: "fail",
          detail: `Node ${process.versions.node}`,
          fix: "install Node 20.18 or newer",
        },
  );

  const addon = loadAddon();
  checks.push(
    addon.ok
      ? { name: "addon", status: "ok", detail: `NVML addon ${addon.path}` }
      : {
          name: "addon",
          status: "warn",
          detail: `NVML addon not loaded: ${addon.reason}`,
          fix: "GPU facts fall back to nvidia-smi; reinstall, or build it: npm run build:native (needs c++ and cmake)",
        },
  );

  const gpu = await createGpuInfoSource({ nvmlLibrary: opts.nvmlLibrary, log: silentLogger() });
  try {
    const snap = await gpu.snapshot();
    const names = snap.devices.map((d) => `${d.index}:${d.name} ${d.memoryTotalMiB ?? "?"} MiB`).join(", ");
    checks.push(
      snap.devices.length > 0
        ? {
            name: "gpu",
            status: gpu.kind === "nvml" ? "ok" : "warn",
            detail: `${snap.devices.length} GPU(s) via ${gpu.kind}: ${names}; driver ${snap.driverVersion ?? "?"}, CUDA ${snap.cudaDriverVersion ?? "?"}`,
            fix:
              gpu.kind === "nvml"
                ? undefined
                : `the NVML addon is not in use (${gpu.reason ?? "unknown reason"}); run npm rebuild`,
          }
        : {
            name: "gpu",
            status: "warn",
            detail: `no GPU (${gpu.reason ?? "none found"}); inference runs on the CPU`,
            fix: "on a GPU host install the NVIDIA driver (libnvidia-ml.so.1) or pass --nvml-library",
          },
    );
  } catch (err) {
    checks.push({
      name: "gpu",
      status: "fail",
      detail: (err as Error).message,
      fix: "check the NVIDIA driver (nvidia-smi)",
    });
  } finally {
    await gpu.close();
  }

  try {
    const { getLlama } = await import("node-llama-cpp");
    const llama = await getLlama({
      gpu: "auto",
      build: "never",
      progressLogs: false,
      logLevel: "error" as never,
    });
    checks.push({
      name: "inference",
      status: "ok",
      detail: `node-llama-cpp ready (${llama.gpu === false ? "CPU" : llama.gpu}; ${llama.cpuMathCores} math cores)`,
    });
    await llama.dispose();
  } catch (err) {
    checks.push({
      name: "inference",
      status: "fail",
      detail: `node-llama-cpp cannot load: ${(err as Error).message.split("\n")[0]}`,
      fix: "reinstall (npm ci); or use --backend ollama",
    });
  }

  if (opts.models) {
    const gguf = existsSync(opts.models) && statSync(opts.models).isDirectory();
    checks.push(
      gguf
        ? { name: "models", status: "ok", detail: `models directory ${opts.models}` }
        : {
            name: "models",
            status: "fail",
            detail: `${opts.models} is not a directory`,
            fix: "pass --models DIR with NAME.gguf files",
          },
    );
  } else {
    checks.push({
      name: "models",
      status: "warn",
      detail: "no --models directory given",
      fix: "run needs --models DIR (NAME.gguf serves model NAME)",
    });
  }

  try {
    if (existsSync(opts.stateDir)) accessSync(opts.stateDir, constants.W_OK);
    checks.push({ name: "state", status: "ok", detail: `state directory ${opts.stateDir}` });
  } catch {
    checks.push({
      name: "state",
      status: "fail",
      detail: `${opts.stateDir} is not writable`,
      fix: "pass --state-dir DIR that this user can write",
    });
  }
  const keyPath = stateFiles.key(opts.stateDir);
  if (existsSync(keyPath)) {
    try {
      const key = loadKeyFile(keyPath);
      checks.push({ name: "key", status: "ok", detail: `signing key ${key.keyId}` });
    } catch (err) {
      checks.push({ name: "key", status: "fail", detail: (err as Error).message });
    }
  } else {
    checks.push({
      name: "key",
      status: "warn",
      detail: "no signing key yet",
      fix: "created on first run, or run: aitbc-native-miner keys generate",
    });
  }

  if (opts.coordinator) {
    const client = createCoordinatorClient({
      protocol: "aitbc",
      baseUrl: opts.coordinator.replace(/\/+$/, ""),
      apiKey: opts.apiKey,
      minerId: "doctor",
      timeoutMs: 5000,
      log: silentLogger(),
    });
    try {
      await client.health();
      checks.push({ name: "coordinator", status: "ok", detail: `${opts.coordinator} answers /health` });
    } catch (err) {
      checks.push({
        name: "coordinator",
        status: "fail",
        detail: `${opts.coordinator}: ${(err as Error).message}`,
        fix: "check the URL and the network",
      });
    } finally {
      await client.close();
    }
  }
  return checks;
}
