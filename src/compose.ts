// Wires a RunConfig into a Miner: key, receipts log, GPU source, backend, coordinator client.
// The same composition serves `run` and `demo`; only the config differs.
import { join } from "node:path";
import { type Backend, BackendError, type ModelInfo } from "./backends/types.js";
import { watchModels } from "./backends/watch.js";
import { type ComputeCheck, checkCompute, runtimeDiagnosis, summarize } from "./compute-check.js";
import type { RunConfig } from "./config.js";
import { createCoordinatorClient } from "./coordinator/client.js";
import type { Capabilities } from "./coordinator/types.js";
import { billedFromMinerReceipt } from "./earnings/earned.js";
import { capabilitiesFromSnapshot, createGpuInfoSource, heartbeatMetrics } from "./gpu/index.js";
import { createGpuPolicy } from "./gpu/policy.js";
import { restrictToGpus } from "./gpu/restrict.js";
import type { GpuInfoSource } from "./gpu/types.js";
import { type Logger, registerSecret } from "./log.js";
import { ClaimJournal } from "./miner/journal.js";
import { DEFAULT_ABORT_GRACE_MS, DEFAULT_FLUSH_TIMEOUT_MS, Miner, type MinerSettings } from "./miner/loop.js";
import { Outbox } from "./miner/outbox.js";
import type { PollBudget } from "./miner/poll-budget.js";
import { pollSettings } from "./miner/poll-settings.js";
import type { HostFacts } from "./miner/screening.js";
import { DEFAULT_MIN_FREE_BYTES, StateStorage } from "./miner/state-storage.js";
import type { InferenceBackend, MinerEvent } from "./ops/events.js";
import { stateFiles } from "./paths.js";
import {
  buildMinerReceipt,
  loadOrCreateKey,
  ReceiptLog,
  verifyCoordinatorReceipt,
} from "./receipts/index.js";

export interface Composed {
  miner: Miner;
  /** What inference computes on, held against NVML's cards: ok, or why this host must not mine. */
  compute: ComputeCheck;
  backend: Backend;
  gpu: GpuInfoSource;
  close(): Promise<void>;
}

export interface ComposeOverrides {
  /** Tests and the demo poll faster than the reference coordinator's 100/min allows. */
  pollMinIntervalMs?: number;
  /** With pollMinIntervalMs: the long-poll wait to ask for (default 0). */
  longPollSeconds?: number;
  flushTimeoutMs?: number;
  abortGraceMs?: number;
  /** How often to look for model changes (default 60 s). */
  modelRefreshMs?: number;
  /** Free space the state directory must keep before a job is taken (tests on a tiny tmpfs). */
  stateMinFreeBytes?: number;
  /** How often a state that cannot be written is probed again (default 5 s; tests go faster). */
  storageRecheckMs?: number;
  /** Ops events (jobs, deliveries, polls) for metrics. */
  onEvent?: (e: MinerEvent) => void;
  /** This process is one worker of a multi-GPU host. */
  worker?: { keyStateDir: string; gpuUuids: readonly string[] | null };
  /** Mine on the CPU even where NVML sees GPUs (the demo: it shows the flow on any host). */
  allowCpuInference?: boolean;
  /** The host's poll budget, granted by the fleet supervisor (default: this miner's own). */
  pollBudget?: PollBudget;
}

/** Which models to warm before the first job, in order: `all` is the largest first. */
export function preloadOrder(preload: string, models: ModelInfo[]): string[] {
  const spec = preload.trim();
  if (spec === "none") return [];
  if (spec === "all")
    return [...models].sort((a, b) => (b.sizeBytes ?? 0) - (a.sizeBytes ?? 0)).map((m) => m.name);
  const served = new Set(models.map((m) => m.name));
  return spec
    .split(",")
    .map((n) => n.trim())
    .filter((n) => n.length > 0 && served.has(n));
}

export async function composeMiner(
  cfg: RunConfig,
  log: Logger,
  overrides: ComposeOverrides = {},
): Promise<Composed> {
  registerSecret(cfg.apiKey);
  registerSecret(cfg.bearerToken);

  // A worker of a multi-GPU host signs with the host's key, kept in the host's state directory.
  const { key } = await loadOrCreateKey(overrides.worker?.keyStateDir ?? cfg.stateDir, log);
  const receiptLog = new ReceiptLog(stateFiles.receiptsLog(cfg.stateDir));

  const hostGpus = await createGpuInfoSource({ nvmlLibrary: cfg.nvmlLibrary, log });
  const gpu = overrides.worker?.gpuUuids ? restrictToGpus(hostGpus, overrides.worker.gpuUuids) : hostGpus;
  const backend = await createBackend(cfg, log);
  const initRetry = await initBackend(backend, log);
  // Before registering: the runtime node-llama-cpp really started decides what is advertised.
  const compute = await checkCompute({
    compute: backend.compute ? () => backend.compute!() : null,
    snapshot: await gpu.snapshot().catch(() => null),
    allowCpu: cfg.allowCpuInference || overrides.allowCpuInference === true,
    assumeNvmlCompute: process.env["AITBC_TEST_COMPUTE"] === "nvml" && cfg.nvmlLibrary !== undefined,
    ...runtimeDiagnosis,
  });
  const advert = compute.ok
    ? { platform: compute.platform, advertiseGpus: compute.advertiseGpus }
    : { platform: "CPU" as const, advertiseGpus: false };
  if (compute.ok) reportCompute(compute, log, overrides.onEvent);
  const policy = createGpuPolicy({
    gpu,
    models: backend,
    log,
    // VRAM admission and GPU health only mean something where inference runs on the GPU.
    cpuOnly: cfg.gpu === "cpu" || !advert.advertiseGpus,
    unloadAfterJob: cfg.unloadAfterJob,
  });
  const snapshot = () => policy.snapshot();
  const admission = (model: string) => policy.admission(model);
  const models = backend.listModels();
  if (models.length === 0) {
    log.warn(
      { event: "no_models" },
      "no model can be served: add NAME.gguf files to --models or entries to --model-map",
    );
  }

  const client = createCoordinatorClient({
    protocol: cfg.protocol,
    baseUrl: cfg.coordinator,
    apiKey: cfg.apiKey,
    bearerToken: cfg.bearerToken,
    minerId: cfg.minerId,
    timeoutMs: cfg.requestTimeout * 1000,
    log,
    region: cfg.region,
    unitPrice: cfg.price,
  });

  const settings: MinerSettings = {
    minerId: cfg.minerId,
    concurrency: cfg.concurrency,
    heartbeatIntervalMs: cfg.heartbeatInterval * 1000,
    ...pollSettings(cfg, overrides),
    jobTimeoutMs: cfg.jobTimeout * 1000,
    gracePeriodMs: cfg.gracePeriod * 1000,
    abortGraceMs: overrides.abortGraceMs ?? DEFAULT_ABORT_GRACE_MS,
    flushTimeoutMs: overrides.flushTimeoutMs ?? DEFAULT_FLUSH_TIMEOUT_MS,
    limits: {
      maxPromptChars: cfg.maxPromptChars,
      maxTokens: cfg.maxTokens,
      defaultMaxTokens: Math.min(256, cfg.maxTokens),
    },
    unloadAfterJob: cfg.unloadAfterJob,
  };

  const miner = new Miner({
    settings,
    client,
    backend,
    onEvent: overrides.onEvent,
    pollBudget: overrides.pollBudget,
    // One model at a time, each through VRAM admission first: as many as fit, never more.
    warmUp: async (signal) => {
      const warm: string[] = [];
      if (!backend.warm) return warm;
      for (const name of preloadOrder(cfg.preload, backend.listModels())) {
        if (signal.aborted) break;
        const refusal = await admission(name);
        if (refusal) {
          log.info({ event: "model_not_preloaded", model: name, reason: refusal.message }, "not preloaded");
          continue;
        }
        warm.push(...(await backend.warm([name], signal)));
      }
      return warm;
    },
    outbox: new Outbox(stateFiles.outbox(cfg.stateDir)),
    storage: new StateStorage(
      join(stateFiles.outbox(cfg.stateDir), ".tmp"),
      log,
      overrides.stateMinFreeBytes ?? DEFAULT_MIN_FREE_BYTES,
      overrides.storageRecheckMs,
    ),
    journal: new ClaimJournal(stateFiles.journal(cfg.stateDir)),
    log,
    async capabilities(): Promise<Capabilities> {
      const s = await snapshot();
      const gpuCaps = capabilitiesFromSnapshot(s, advert);
      return {
        ...gpuCaps,
        models: backend.listModels().map((m) => m.name),
        supported_tasks: ["inference"],
        max_concurrent_jobs: cfg.concurrency,
        region: cfg.region,
        price: cfg.price,
      };
    },
    async hostFacts(): Promise<HostFacts> {
      const s = await policy.recent();
      const devices = s?.devices ?? [];
      return {
        models: backend.listModels().map((m) => m.name),
        gpuNames: devices.map((d) => d.name),
        maxVramGb: Math.max(0, ...devices.map((d) => (d.memoryTotalMiB ?? 0) / 1024)),
        cuda: s?.cudaDriverVersion ?? null,
      };
    },
    async heartbeatMetadata() {
      const s = await snapshot();
      return {
        gpu_source: gpu.kind,
        gpus: heartbeatMetrics(s, advert),
        ...(s === null && gpu.kind !== "none" && advert.advertiseGpus
          ? { gpu_error: "snapshot failed" }
          : {}),
        backend: backend.name,
        platform: advert.platform,
        inference: inferenceFacts(compute),
      };
    },
    signReceipt: (input) => buildMinerReceipt(input, key) as unknown as Record<string, unknown>,
    checkCoordinatorReceipt: (text) => verifyCoordinatorReceipt(text, cfg.coordinatorKey),
    // A miner receipt's line says what its result is billed at (the earnings report reconciles it).
    recordReceipt: (entry) =>
      receiptLog.append({
        ...entry,
        at: new Date().toISOString(),
        billed:
          entry.kind === "miner"
            ? billedFromMinerReceipt(entry.receipt, client.traits.priced ? cfg.price : null)
            : undefined,
      }),
    admit: (req) => admission(req.model),
    jobMemoryProbe: () => policy.memoryProbe(),
    jobMetrics: async () => policy.jobMetrics(),
  });

  // New model files, map edits or Ollama pulls: look again every minute and tell the coordinator.
  // backend.listModels() is the one source of what is servable (the fallback backend's included).
  const modelWatch = watchModels({
    backend,
    log,
    intervalMs: overrides.modelRefreshMs ?? 60_000,
    onChange: () => miner.updateRegistration(),
  });

  return {
    miner,
    compute,
    backend,
    gpu,
    async close() {
      modelWatch.stop();
      initRetry.stop();
      await gpu.close().catch(() => undefined);
      await receiptLog.close();
    },
  };
}

/** What heartbeats say inference computes on; "external" for a backend that cannot tell (Ollama). */
function inferenceFacts(c: ComputeCheck): { backend: InferenceBackend; devices: string[] } {
  const s = summarize(c);
  return { backend: s.backend ?? "cpu", devices: s.devices };
}

/** Say once what inference computes on: the log, and /metrics through the event. */
function reportCompute(c: ComputeCheck & { ok: true }, log: Logger, onEvent?: (e: MinerEvent) => void) {
  const facts = inferenceFacts(c);
  const fields = {
    event: "inference_runtime",
    ...facts,
    platform: c.platform,
    build: c.compute?.build ?? null,
  };
  if (c.note) log.warn(fields, c.note);
  else
    log.info(
      fields,
      `inference on ${c.platform}${facts.devices.length ? ` (${facts.devices.join(", ")})` : ""}`,
    );
  onEvent?.({ type: "inference_runtime", ...facts, platform: c.platform });
}

/**
 * Start the backend. One that is unreachable (Ollama not up yet) is not fatal: the miner starts,
 * serves no model from it, and the backend is retried every 15 s until it answers.
 */
async function initBackend(backend: Backend, log: Logger): Promise<{ stop(): void }> {
  try {
    await backend.init();
    return { stop() {} };
  } catch (err) {
    if (!(err instanceof BackendError) || err.code !== "backend_unavailable") throw err;
    log.error({ event: "backend_unavailable", backend: backend.name, reason: err.message }, err.message);
  }
  const timer = setInterval(() => {
    backend.init().then(
      () => {
        clearInterval(timer);
        log.info({ event: "backend_available", backend: backend.name }, `${backend.name} backend is up`);
      },
      () => undefined,
    );
  }, 15_000);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

async function createBackend(cfg: RunConfig, log: Logger): Promise<Backend> {
  // Loaded on demand: node-llama-cpp is large, and an Ollama-only host need not have it at all.
  const { createOllamaBackend } = await import("./backends/ollama.js");
  const ollama = () =>
    createOllamaBackend({
      url: cfg.ollamaUrl,
      log,
      timeoutMs: cfg.jobTimeout * 1000,
      unloadAfterJob: cfg.unloadAfterJob,
    });
  if (cfg.backend === "ollama") return ollama();
  const { createLlamaBackend } = await import("./backends/llama/index.js");
  const llama = createLlamaBackend({
    modelsDir: cfg.models,
    modelMapFile: cfg.modelMap,
    threads: cfg.threads,
    concurrency: cfg.concurrency,
    gpu: cfg.gpu === "cpu" ? false : "auto",
    log,
    unloadAfterJob: cfg.unloadAfterJob,
    contextSize: cfg.contextSize,
  });
  if (!cfg.ollamaFallback) return llama;
  const { createFallbackBackend } = await import("./backends/fallback.js");
  return createFallbackBackend(llama, ollama(), log);
}
