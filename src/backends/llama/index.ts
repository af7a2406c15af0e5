// In-process inference with node-llama-cpp (docs/models.md), composed of four parts that each own
// their state: the runtime (runtime.ts), what can be served (catalog.ts), loaded models and their
// sequences (pool.ts), and one completion (generate.ts). This file only wires them into a Backend.
import type { Logger } from "../../log.js";
import { ActivityBoard } from "../activity.js";
import { type Backend, BackendError, type ModelInfo } from "../types.js";
import { ModelCatalog } from "./catalog.js";
import { runCompletion } from "./generate.js";
import type { ModelCandidate } from "./models.js";
import { ModelPool } from "./pool.js";
import { LlamaRuntime } from "./runtime.js";

export interface LlamaBackendOptions {
  modelsDir?: string | undefined;
  modelMapFile?: string | undefined;
  threads: number;
  concurrency: number;
  gpu: "auto" | false;
  log: Logger;
  unloadAfterJob?: boolean | undefined;
  /** Models kept loaded at once (default 2). */
  maxLoadedModels?: number | undefined;
  /** Sum of loaded model file sizes allowed (null: no budget). */
  vramBudgetBytes?: number | null | undefined;
  /** Tokens per sequence (default: the model's training context, at most 4096). */
  contextSize?: number | undefined;
  /** Load each model once in a child process before trusting it in-process (default true). */
  preflight?: boolean | undefined;
  /** Preflight time limit for a file of this size (default: preflightTimeoutMs, 60 s + 30 s/GiB). */
  preflightTimeoutMs?: ((sizeBytes: number | null) => number) | undefined;
  /** Where `hf:` map entries are downloaded (default: <cache dir>/models). */
  downloadDir?: string | undefined;
  /** Give up a download that makes no progress for this long (default 30 s). */
  downloadStallMs?: number | undefined;
}

export interface LlamaBackend extends Backend {
  /** Rescan the models directory and map (advertised names change accordingly). */
  refresh(): Promise<void>;
  /** The GPU type in use ("cuda", ...) or false for CPU; null before init. */
  readonly gpuType: string | false | null;
}

export function createLlamaBackend(opts: LlamaBackendOptions): LlamaBackend {
  const log = opts.log.child({ component: "llama" });
  const threads = Math.max(1, Math.floor(opts.threads));
  const runtime = new LlamaRuntime({ threads, gpu: opts.gpu, log });
  const activities = new ActivityBoard(log);
  const catalog = new ModelCatalog({
    activities,
    modelsDir: opts.modelsDir,
    modelMapFile: opts.modelMapFile,
    log,
    preflight: opts.preflight,
    preflightTimeoutMs: opts.preflightTimeoutMs,
    downloadDir: opts.downloadDir,
    downloadStallMs: opts.downloadStallMs,
  });
  const pool = new ModelPool({
    threads,
    concurrency: Math.max(1, Math.floor(opts.concurrency)),
    maxLoadedModels: Math.max(1, opts.maxLoadedModels ?? 2),
    vramBudgetBytes: opts.vramBudgetBytes ?? null,
    contextSize: opts.contextSize,
    unloadAfterJob: opts.unloadAfterJob,
    log,
    runtime,
    catalog,
  });

  /** The runtime, its start watched (it may take long: CUDA libraries from a slow disk). */
  const ensureRuntime = async () => {
    if (runtime.gpuType !== null) return runtime.ensure();
    const run = activities.start("runtime", { model: "", reportsProgress: false });
    try {
      const l = await runtime.ensure();
      run.end("ok");
      return l;
    } catch (err) {
      run.end("failed", { reason: (err as Error).message });
      throw err;
    }
  };
  /**
   * `load` watched as a load of `c` when the model is not loaded yet. A preflight comes first
   * inside it and is watched on its own; node-llama-cpp's load reports no progress here (the
   * pool would have to pass onLoadProgress), so the load counts as one step.
   */
  const watchLoad = async <T>(c: ModelCandidate, load: () => Promise<T>): Promise<T> => {
    if (!c.path || pool.isLoaded(c.path)) return load();
    const run = activities.start("load", {
      model: c.name,
      path: c.path,
      sizeBytes: c.sizeBytes,
      reportsProgress: false,
    });
    try {
      const r = await load();
      run.end("ok");
      return r;
    } catch (err) {
      run.end("failed", { reason: (err as Error).message });
      throw err;
    }
  };

  /** Loaded models whose file changed or went are dropped (docs/models.md, "Replacing a model"). */
  const retireStale = () => pool.retireStale((path, fileId) => catalog.isCurrent(path, fileId));

  return {
    name: "llama",
    get gpuType() {
      return runtime.gpuType;
    },
    compute: () => runtime.compute(),
    async init() {
      // What can be served is known from the files alone: the runtime starts meanwhile, and
      // whoever needs it (a job, warm-up) waits for it.
      runtime.ensure().catch(() => undefined);
      await catalog.scan();
    },
    progress: () => activities.snapshot(),
    async warm(names, signal) {
      await ensureRuntime();
      const warmed: string[] = [];
      for (const name of names) {
        if (signal.aborted || pool.closed) break;
        const c = catalog.lookup(name);
        if (!c?.path || catalog.hasFailed(c.path)) continue;
        if (!pool.isLoaded(c.path) && !pool.hasRoomFor(c)) continue; // as many as fit
        try {
          await watchLoad(c, async () => pool.prime(await pool.get(c)));
          warmed.push(name);
        } catch (err) {
          log.warn(
            { event: "model_warm_failed", model: name, err: (err as Error).message },
            "model could not be warmed; it loads on its first job instead",
          );
        }
      }
      return warmed;
    },
    async refresh() {
      await catalog.scan();
      await catalog.retryUnverified();
      // A model that was loaded from a file since replaced is loaded again from the new file
      // (preflighted first, as any new file) when it could be unloaded at once.
      for (const path of await retireStale()) {
        const name = catalog.advertised.find((n) => catalog.lookup(n)?.path === path);
        const c = name === undefined ? null : catalog.lookup(name);
        if (!c || pool.closed || !pool.hasRoomFor(c)) continue;
        await watchLoad(c, async () => pool.prime(await pool.get(c))).catch((err: Error) => {
          log.warn(
            { event: "model_reload_failed", model: c.name, path, err: err.message },
            "the model's new file could not be loaded",
          );
        });
      }
    },
    listModels(): ModelInfo[] {
      return catalog.advertised.map((name) => {
        const c = catalog.lookup(name);
        return { name, sizeBytes: c?.sizeBytes ?? null, source: c?.uri ?? c?.path ?? "" };
      });
    },
    hasModel(name) {
      return catalog.lookup(name) !== null;
    },
    hasExactModel(name) {
      return catalog.lookup(name, { plainFallback: false }) !== null;
    },
    isLoaded(name) {
      const c = catalog.lookup(name);
      return c?.path ? pool.isLoaded(c.path) : false;
    },
    async generate(req, signal) {
      if (pool.closed) throw new BackendError("backend_unavailable", "llama backend is closed");
      const t0 = performance.now();
      await runtime.ensure();
      // One stat: a model file changed since the last scan is noticed before the job uses it.
      const c = await catalog.forJobNow(req.model).finally(retireStale);
      if (signal.aborted) throw new BackendError("aborted", "job aborted before it started");
      const { entry, seq } = await watchLoad(c, () => pool.checkout(c, signal));
      // From here the job holds weights in memory: a change to the file no longer touches it.
      log.debug(
        { event: "generation_started", model: req.model, waitedMs: Math.round(performance.now() - t0) },
        "generation started",
      );
      try {
        const out = await runCompletion(entry.model, seq, req, signal);
        return { ...out, model: req.model, backend: "llama", durationMs: Math.round(performance.now() - t0) };
      } catch (err) {
        if (err instanceof BackendError) throw err;
        if (signal.aborted)
          throw new BackendError("aborted", "job aborted during generation", { cause: err });
        throw new BackendError("inference_failed", `inference failed: ${(err as Error).message}`, {
          cause: err,
        });
      } finally {
        await pool.release(entry, seq);
      }
    },
    async unloadAll() {
      await pool.unloadAll();
    },
    async close() {
      if (pool.closed) return;
      await pool.close();
      await runtime.dispose();
    },
  };
}
