// `doctor`: what works on this host, what is missing, and what to do about it. Read-only.
import { randomBytes } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import { dirname } from "node:path";
import type { Command } from "commander";
import { probeInference, summarize } from "../compute-check.js";
import { checkCoordinatorUrl, resolveSecretFiles } from "../config.js";
import { createCoordinatorClient } from "../coordinator/client.js";
import { CoordinatorError } from "../coordinator/errors.js";
import type { CoordinatorClient } from "../coordinator/types.js";
import { createGpuInfoSource, loadAddon } from "../gpu/index.js";
import type { GpuSnapshot } from "../gpu/types.js";
import { silentLogger } from "../log.js";
import { DEFAULT_MIN_FREE_BYTES, StateStorage } from "../miner/state-storage.js";
import { stateFiles } from "../paths.js";
import { loadKeyFile } from "../receipts/index.js";
import { redactUrlCredentials } from "../redact.js";
import { envOf } from "../settings.js";
import { version } from "../version.js";
import { addDoctorOptions, type DoctorSettings, doctorSettings, flag } from "./doctor-settings.js";

type Status = "ok" | "warn" | "fail";
interface Check {
  name: string;
  status: Status;
  detail: string;
  fix?: string | undefined;
}

/** run's settings as run reads them, the API key resolved from its file, and --json. */
type DoctorOptions = DoctorSettings & { json?: boolean | undefined };

export function register(program: Command): void {
  const cmd = program
    .command("doctor")
    .description("check this host: Node, NVML/GPU, inference runtime, models, state, keys, coordinator");
  addDoctorOptions(cmd)
    .option("--json", "machine-readable output")
    .action(async (raw: Record<string, unknown>) => {
      // run's own rules first, before any check or request: a value run refuses, or a key run
      // would not send, is a ConfigError (exit code 2) in run's words.
      const opts: DoctorOptions = { ...doctorSettings(raw), json: raw["json"] === true };
      if (opts.coordinator) {
        checkCoordinatorUrl(opts.coordinator, opts.allowInsecureHttp);
        opts.apiKey = resolveSecretFiles({ apiKey: opts.apiKey, apiKeyFile: opts.apiKeyFile }).apiKey;
      }
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
  let snapshot: GpuSnapshot | null = null;
  try {
    const snap = await gpu.snapshot();
    snapshot = snap;
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
            fix: `on a GPU host install the NVIDIA driver (libnvidia-ml.so.1) or pass ${flag("nvmlLibrary")}`,
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

  checks.push(await checkInference(opts, snapshot));

  checks.push(...(await checkModels(opts)));

  checks.push(await checkStateDir(opts.stateDir));
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

  if (opts.coordinator) checks.push(...(await checkCoordinator(opts, opts.coordinator)));
  return checks;
}

/**
 * Each model file as `run` judges it (the same catalog: header and size checks, then a preflight
 * load in a child process): servable, or refused with the reason `run` would log.
 */
async function checkModels(opts: DoctorOptions): Promise<Check[]> {
  if (!opts.models && !opts.modelMap)
    return [
      {
        name: "models",
        status: "warn",
        detail: `no ${flag("models")} directory or ${flag("modelMap")} given`,
        fix: `run needs ${flag("models", true)} (NAME.gguf serves model NAME) or ${flag("modelMap", true)}`,
      },
    ];
  if (opts.models && !(existsSync(opts.models) && statSync(opts.models).isDirectory()))
    return [
      {
        name: "models",
        status: "fail",
        detail: `${opts.models} is not a directory`,
        fix: `pass ${flag("models", true)} with NAME.gguf files`,
      },
    ];
  const { ModelCatalog } = await import("../backends/llama/catalog.js");
  const catalog = new ModelCatalog({
    modelsDir: opts.models,
    modelMapFile: opts.modelMap,
    log: silentLogger(),
  });
  let verdicts: Awaited<ReturnType<typeof catalog.inspect>>;
  try {
    await catalog.scan();
    verdicts = await catalog.inspect();
  } catch (err) {
    return [
      {
        name: "models",
        status: "fail",
        detail: (err as Error).message,
        fix: "fix the model map or directory",
      },
    ];
  }
  const servable = verdicts.filter((v) => v.servable).length;
  const where = [opts.models, opts.modelMap].filter(Boolean).join(" and ");
  const summary: Check =
    servable > 0
      ? {
          name: "models",
          status: "ok",
          detail: `${servable} of ${verdicts.length} model file(s) servable in ${where}`,
        }
      : {
          name: "models",
          status: "fail",
          detail: `no servable model in ${where} (${verdicts.length} file(s) seen)`,
          fix: "run would take no job: add NAME.gguf files that load (see docs/models.md)",
        };
  return [
    summary,
    ...verdicts.map(
      (v): Check =>
        v.servable
          ? { name: "model", status: "ok", detail: `${v.name}: servable (${v.path})` }
          : {
              name: "model",
              // run mines with the others; with none servable the summary above fails.
              status: "warn",
              detail: `${v.name}: refused: ${v.reason ?? "unknown reason"} (${v.path})`,
              fix: "replace or remove this file: run does not advertise it",
            },
    ),
  ];
}

/**
 * What `run` would compute on, by the same check `run` makes before it registers (compute-check.ts):
 * the runtime node-llama-cpp really starts, held against the GPUs NVML sees.
 */
async function checkInference(opts: DoctorOptions, snapshot: GpuSnapshot | null): Promise<Check> {
  const c = summarize(
    await probeInference({
      snapshot,
      gpu: opts.gpu,
      allowCpu: opts.allowCpuInference,
    }),
  );
  if (c.refusal)
    return {
      name: "inference",
      status: "fail",
      detail: c.refusal.message,
      fix:
        c.refusal.code === "runtime_unavailable"
          ? "reinstall (npm ci); or use --backend ollama"
          : `run would exit 69 here: apply the fix above, or pass ${flag("allowCpuInference")} to mine on the CPU`,
    };
  const devices = c.devices.length ? ` (${c.devices.join(", ")})` : "";
  const build = c.build ? `, ${c.build} binary` : "";
  return {
    name: "inference",
    // Mining on the CPU beside unused GPUs is allowed here, but worth a look.
    status: c.note && c.platform === "CPU" && opts.gpu !== "cpu" ? "warn" : "ok",
    detail: `node-llama-cpp computes on ${c.platform}${devices}${build}${c.note ? `: ${c.note}` : ""}`,
  };
}

/**
 * A real write (a probe file, fsync, removed) and the free space: what the miner itself needs
 * before it takes a job. A directory not made yet is judged by its nearest existing parent.
 */
async function checkStateDir(dir: string): Promise<Check> {
  let probeDir = dir;
  while (!existsSync(probeDir) && dirname(probeDir) !== probeDir) probeDir = dirname(probeDir);
  const storage = new StateStorage(probeDir, silentLogger(), DEFAULT_MIN_FREE_BYTES);
  const writable = await storage.check();
  const { reason, freeBytes } = storage.snapshot();
  const free = freeBytes === null ? "" : `, ${Math.floor(freeBytes / (1024 * 1024))} MiB free`;
  const where =
    probeDir === dir ? `state directory ${dir}` : `state directory ${dir} (to be created in ${probeDir})`;
  if (writable) return { name: "state", status: "ok", detail: `${where} writable${free}` };
  return {
    name: "state",
    status: "fail",
    detail: `${where}: ${reason}`,
    fix:
      freeBytes !== null && reason?.includes("headroom")
        ? "free disk space: the miner takes no job while the state directory is this full"
        : `pass ${flag("stateDir", true)} that this user can write (or fix its permissions / remount it read-write)`,
  };
}

async function checkCoordinator(opts: DoctorOptions, coordinator: string): Promise<Check[]> {
  const shown = redactUrlCredentials(coordinator);
  const client = createCoordinatorClient({
    protocol: "aitbc",
    baseUrl: coordinator.replace(/\/+$/, ""),
    apiKey: opts.apiKey,
    // A miner id no miner has: the probe below must never touch a real miner's state.
    minerId: `doctor-probe-${randomBytes(6).toString("hex")}`,
    timeoutMs: 5000,
    log: silentLogger(),
  });
  try {
    await client.health();
  } catch (err) {
    await client.close();
    return [
      {
        name: "coordinator",
        status: "fail",
        detail: `${shown}: ${redactUrlCredentials((err as Error).message)}`,
        fix: "check the URL and the network",
      },
    ];
  }
  try {
    return [
      { name: "coordinator", status: "ok", detail: `${shown} answers /health` },
      await checkCredentials(client, opts),
    ];
  } finally {
    await client.close();
  }
}

/**
 * An authenticated call with no side effects: a heartbeat for a miner id nobody registered. The
 * coordinator checks the key first, then answers 404 (unknown miner) without creating anything.
 */
async function checkCredentials(client: CoordinatorClient, opts: DoctorOptions): Promise<Check> {
  if (!opts.apiKey)
    return {
      name: "credentials",
      status: "warn",
      detail: "no API key given: not checked",
      fix: `pass ${flag("apiKeyFile", true)} (or ${envOf("apiKeyFile")} / ${envOf("apiKey")}) to check the key run will use`,
    };
  try {
    await client.heartbeat({ inflight: 0, metadata: { probe: "doctor" } });
    return { name: "credentials", status: "ok", detail: "the coordinator accepts this API key" };
  } catch (err) {
    if (err instanceof CoordinatorError && err.kind === "not_found")
      return { name: "credentials", status: "ok", detail: "the coordinator accepts this API key" };
    if (err instanceof CoordinatorError && err.kind === "auth")
      return {
        name: "credentials",
        status: "fail",
        detail: `the coordinator refuses this API key (HTTP ${err.status ?? "?"}): run would exit 2`,
        fix: `check the key file (${flag("apiKeyFile")}) against the key the coordinator's operator issued`,
      };
    return {
      name: "credentials",
      status: "warn",
      detail: `could not check the API key: ${redactUrlCredentials((err as Error).message)}`,
    };
  }
}
