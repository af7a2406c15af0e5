// In-process inference with node-llama-cpp (DESIGN §5, §8). One context per loaded model with
// `concurrency` sequences: parallel jobs batch together. Models stay hot in an LRU cache bounded
// by count and by a VRAM budget (file size as the estimate); only idle models are evicted.
import { join } from "node:path";
import {
  getLlama,
  InsufficientMemoryError,
  type Llama,
  LlamaCompletion,
  type LlamaContext,
  type LlamaContextSequence,
  LlamaLogLevel,
  type LlamaModel,
  LlamaVocabularyType,
  resolveModelFile,
  type Token,
} from "node-llama-cpp";
import type { Logger } from "../log.js";
import { defaultCacheDir } from "../paths.js";
import {
  advertisedNames,
  type ModelCandidate,
  readModelMap,
  resolveModel,
  type ScanResult,
  scanModels,
} from "./models.js";
import { type PreflightResult, preflightTimeoutMs, runPreflight } from "./preflight.js";
import {
  type Backend,
  BackendError,
  type InferenceRequest,
  type InferenceResult,
  type ModelInfo,
} from "./types.js";

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

interface Loaded {
  path: string;
  model: LlamaModel;
  context: LlamaContext;
  free: LlamaContextSequence[];
  waiters: ((seq: LlamaContextSequence) => void)[];
  active: number;
  lastUsed: number;
  sizeBytes: number;
  unloadWhenIdle: boolean;
}

const DEFAULT_CONTEXT_CAP = 4096;

/** The token LlamaCompletion prepends to every input (node-llama-cpp's tokenizerUtils, 3.21.1). */
function beginningToken(model: LlamaModel): Token | null {
  const type = model.vocabularyType;
  if (type === LlamaVocabularyType.rwkv || type === LlamaVocabularyType.ugm) return null;
  if (type === LlamaVocabularyType.wpm) return model.tokens.bos;
  return model.tokens.shouldPrependBosToken ? model.tokens.bos : null;
}

/** Defence in depth: the sequence must still hold the whole prompt after generation. */
function assertWholePrompt(seq: LlamaContextSequence, model: LlamaModel, prompt: Token[]): void {
  const held = seq.contextTokens;
  const offset = beginningToken(model) === null ? 0 : 1;
  const intact = prompt.every((t, i) => held[i + offset] === t);
  if (!intact) {
    throw new BackendError(
      "inference_failed",
      "the prompt was shifted out of the context during generation; the output does not answer it",
    );
  }
}

export function createLlamaBackend(opts: LlamaBackendOptions): LlamaBackend {
  const log = opts.log.child({ component: "llama" });
  const concurrency = Math.max(1, Math.floor(opts.concurrency));
  const threads = Math.max(1, Math.floor(opts.threads));
  const maxLoaded = Math.max(1, opts.maxLoadedModels ?? 2);
  const budget = opts.vramBudgetBytes ?? null;
  let llama: Llama | null = null;
  let candidates: ModelCandidate[] = [];
  let advertised: string[] = [];
  const loaded = new Map<string, Loaded>();
  const loading = new Map<string, Promise<Loaded>>();
  /** path → reason: models that failed preflight or load are no longer advertised. */
  const failed = new Map<string, string>();
  const preflighted = new Set<string>();
  /** path → reason: preflight ran out of time. Not advertised, not loaded; retried on refresh or a job. */
  const unverified = new Map<string, string>();
  const preflighting = new Map<string, Promise<PreflightResult>>();
  let closed = false;
  /** The runtime starting (or started): registration does not wait for it, jobs and warm-up do. */
  let runtime: Promise<Llama> | null = null;

  /** The runtime, started once; a failed start is tried again by the next caller. */
  function ensureRuntime(): Promise<Llama> {
    runtime ??= startRuntime().then(
      (l) => {
        llama = l;
        return l;
      },
      (err: unknown) => {
        runtime = null;
        throw new BackendError(
          "backend_unavailable",
          `node-llama-cpp could not start (${(err as Error).message}); reinstall node-llama-cpp or use --backend ollama`,
          { cause: err },
        );
      },
    );
    return runtime;
  }

  async function startRuntime(): Promise<Llama> {
    const logger = (level: LlamaLogLevel, message: string) => {
      const text = message.trim();
      if (!text) return;
      if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal)
        log.error({ event: "llama_cpp" }, text);
      else if (level === LlamaLogLevel.warn) log.warn({ event: "llama_cpp" }, text);
      else log.debug({ event: "llama_cpp" }, text);
    };
    const base = { build: "never" as const, maxThreads: threads, logLevel: LlamaLogLevel.warn, logger };
    if (opts.gpu === false) {
      const l = await getLlama({ ...base, gpu: false });
      log.info(
        { event: "llama_runtime", gpu: false, threads },
        "llama runtime on CPU (GPU disabled by config)",
      );
      return l;
    }
    try {
      const l = await getLlama({ ...base, gpu: "auto" });
      if (l.gpu === false) {
        log.warn(
          { event: "llama_runtime", gpu: false, threads },
          "no usable GPU backend (no CUDA/Vulkan device or prebuilt binary): running inference on CPU",
        );
      } else {
        const devices = await l.getGpuDeviceNames().catch(() => []);
        log.info({ event: "llama_runtime", gpu: l.gpu, devices }, `llama runtime on ${l.gpu}`);
      }
      return l;
    } catch (err) {
      const l = await getLlama({ ...base, gpu: false });
      log.warn(
        { event: "llama_runtime", gpu: false, threads, err: (err as Error).message },
        "GPU runtime failed to start: running inference on CPU",
      );
      return l;
    }
  }

  async function downloadEntries(list: ModelCandidate[]): Promise<ModelCandidate[]> {
    const out: ModelCandidate[] = [];
    for (const c of list) {
      if (c.path || !c.uri) {
        out.push(c);
        continue;
      }
      const directory = opts.downloadDir ?? join(defaultCacheDir(), "models");
      let lastPct = -10;
      // No overall deadline (models are large); a download that stalls is abandoned.
      const stallMs = opts.downloadStallMs ?? 30_000;
      const stall = new AbortController();
      let watchdog = setTimeout(() => stall.abort(new Error(`no progress for ${stallMs} ms`)), stallMs);
      try {
        // resolveModelFile does not always honour the signal (e.g. while resolving the host): race it.
        const stalled = new Promise<never>((_, reject) =>
          stall.signal.addEventListener("abort", () => reject(stall.signal.reason), { once: true }),
        );
        const download = resolveModelFile(c.uri, {
          directory,
          download: "auto",
          cli: false,
          signal: stall.signal,
          onProgress: ({ totalSize, downloadedSize }) => {
            clearTimeout(watchdog);
            watchdog = setTimeout(() => stall.abort(new Error(`no progress for ${stallMs} ms`)), stallMs);
            const pct = totalSize > 0 ? Math.floor((downloadedSize / totalSize) * 100) : 0;
            if (pct >= lastPct + 10) {
              lastPct = pct;
              log.info(
                { event: "model_download", model: c.name, pct, downloadedSize, totalSize },
                "downloading",
              );
            }
          },
        });
        download.catch(() => undefined); // settles after the race when abandoned
        const path = await Promise.race([download, stalled]);
        const scanned = scanModels({ mapEntries: [{ name: c.name, path, uri: null }] });
        if (scanned.candidates[0]) out.push({ ...scanned.candidates[0], uri: c.uri });
        else {
          const reason = scanned.skipped[0]?.reason ?? "not a GGUF model";
          log.error(
            { event: "model_skipped", model: c.name, path, reason },
            `downloaded model ${c.name} not offered: ${reason}`,
          );
        }
      } catch (err) {
        const why = stall.signal.aborted
          ? String((stall.signal.reason as Error).message)
          : (err as Error).message;
        log.error(
          { event: "model_download_failed", model: c.name, uri: c.uri, err: why },
          `cannot download ${c.uri} (no network or no such file?): model ${c.name} is not offered`,
        );
      } finally {
        clearTimeout(watchdog);
      }
    }
    return out;
  }

  /** Same problem, other figures: a file still being copied in is not reported again every rescan. */
  const sameKind = (a: string, b: string) => a.replace(/[\d.]+/g, "#") === b.replace(/[\d.]+/g, "#");
  /** path → why it is not offered, as last seen: each file is reported once, not every rescan. */
  const reported = new Map<string, string>();
  /** Files the last scan refused, so a job for one fails with the reason rather than "not here". */
  let refused: ModelCandidate[] = [];
  let lastListed: string | null = null;

  function reportScan(result: ScanResult): void {
    const now = new Map<string, string>();
    for (const s of result.skipped) {
      now.set(s.path, s.reason);
      if (reported.has(s.path) && sameKind(reported.get(s.path)!, s.reason)) continue;
      log.warn(
        { event: "model_skipped", model: s.name, path: s.path, reason: s.reason },
        `model ${s.name} not offered: ${s.reason}`,
      );
    }
    for (const c of result.candidates) {
      if (!c.path || !c.sizeUnchecked) continue;
      const note = `size unchecked: ${c.sizeUnchecked}`;
      now.set(c.path, note);
      if (reported.get(c.path) !== note)
        log.debug(
          { event: "model_size_unchecked", model: c.name, path: c.path, reason: c.sizeUnchecked },
          "model offered without a size check; the preflight load decides",
        );
    }
    // A file that comes back broken after being fixed (or removed) is reported again.
    reported.clear();
    for (const [k, v] of now) reported.set(k, v);
    refused = result.skipped.map((s) => ({
      name: s.name,
      path: s.path,
      uri: null,
      sizeBytes: null,
      origin: s.origin,
    }));
  }

  async function scan(): Promise<void> {
    const mapEntries = opts.modelMapFile ? readModelMap(opts.modelMapFile) : [];
    const result = scanModels({ modelsDir: opts.modelsDir, mapEntries });
    reportScan(result);
    candidates = await downloadEntries(result.candidates);
    recomputeAdvertised();
    const listed = [...advertised].sort().join("\n");
    if (listed !== lastListed) {
      lastListed = listed;
      log.info({ event: "models", models: advertised }, `${advertised.length} model(s) available`);
    }
  }

  function recomputeAdvertised(): void {
    advertised = advertisedNames(usable()).filter((n) => lookup(n) !== null);
  }

  /**
   * The usable file that serves `name`, resolved among every file seen (refused and failed ones
   * included), so that a broken NAME-TAG.gguf is never answered by a working NAME.gguf.
   */
  function lookup(name: string, o: { plainFallback?: boolean } = {}): ModelCandidate | null {
    const c = resolveModel(name, known(), o);
    return c && usable().includes(c) ? c : null;
  }

  function known(): ModelCandidate[] {
    return [...candidates.filter((x) => x.path), ...refused];
  }

  function usable(): ModelCandidate[] {
    return candidates.filter((c) => c.path && !failed.has(c.path) && !unverified.has(c.path));
  }

  /**
   * Preflight `c` once (concurrent callers share the run). A broken model is failed for good; one
   * whose preflight timed out is only "not verified yet": unadvertised until a later try succeeds.
   */
  async function verify(c: ModelCandidate): Promise<PreflightResult> {
    const path = c.path!;
    let p = preflighting.get(path);
    if (!p) {
      const limit = (opts.preflightTimeoutMs ?? preflightTimeoutMs)(c.sizeBytes);
      p = runPreflight(path, limit).finally(() => preflighting.delete(path));
      preflighting.set(path, p);
    }
    const r = await p;
    if (r.ok) {
      preflighted.add(path);
      unverified.delete(path);
    } else if (r.timedOut) {
      if (!unverified.has(path))
        log.warn(
          { event: "model_unverified", model: c.name, path, reason: r.reason },
          "model preflight timed out: not offered until a later preflight succeeds",
        );
      unverified.set(path, r.reason);
    } else {
      unverified.delete(path);
      failed.set(path, r.reason);
    }
    recomputeAdvertised();
    return r;
  }

  /** Retry the preflights that timed out before (on refresh). */
  async function retryUnverified(): Promise<void> {
    for (const c of candidates) {
      if (c.path && unverified.has(c.path) && !failed.has(c.path) && opts.preflight !== false)
        await verify(c);
    }
  }

  async function unload(entry: Loaded): Promise<void> {
    loaded.delete(entry.path);
    await entry.context.dispose().catch(() => undefined);
    await entry.model.dispose().catch(() => undefined);
    log.info({ event: "model_unloaded", path: entry.path }, "model unloaded");
  }

  /** Evict idle models, least recently used first, until `incoming` bytes fit. */
  async function makeRoom(incoming: number): Promise<void> {
    const idle = () =>
      [...loaded.values()].filter((l) => l.active === 0).sort((a, b) => a.lastUsed - b.lastUsed);
    const used = () => [...loaded.values()].reduce((s, l) => s + l.sizeBytes, 0);
    while (loaded.size >= maxLoaded || (budget !== null && used() + incoming > budget)) {
      const victim = idle()[0];
      if (!victim) break; // everything is busy: go over the bound rather than fail a job
      await unload(victim);
    }
  }

  async function load(c: ModelCandidate): Promise<Loaded> {
    const path = c.path!;
    const size = c.sizeBytes ?? 0;
    if (budget !== null && size > budget) {
      throw new BackendError(
        "insufficient_vram",
        `model ${c.name} (${size} bytes) is larger than the VRAM budget (${budget} bytes)`,
      );
    }
    if (opts.preflight !== false && !preflighted.has(path)) {
      const r = await verify(c);
      if (!r.ok && r.timedOut) {
        throw new BackendError(
          "model_load_failed",
          `model ${c.name} is not verified yet (${r.reason}); it is tried again on the next job or refresh`,
        );
      }
      if (!r.ok) throw new BackendError("model_load_failed", `model ${c.name} failed to load: ${r.reason}`);
    }
    await makeRoom(size);
    const l = await ensureRuntime();
    const t0 = performance.now();
    let model: LlamaModel | undefined;
    try {
      model = await l.loadModel({ modelPath: path });
      const train = model.trainContextSize || DEFAULT_CONTEXT_CAP;
      const contextSize = opts.contextSize ?? Math.min(train, DEFAULT_CONTEXT_CAP);
      const context = await model.createContext({ sequences: concurrency, contextSize, threads });
      const free: LlamaContextSequence[] = [];
      for (let i = 0; i < concurrency; i++) free.push(context.getSequence());
      const entry: Loaded = {
        path,
        model,
        context,
        free,
        waiters: [],
        active: 0,
        lastUsed: Date.now(),
        sizeBytes: size,
        unloadWhenIdle: false,
      };
      loaded.set(path, entry);
      log.info(
        {
          event: "model_loaded",
          model: c.name,
          path,
          ms: Math.round(performance.now() - t0),
          gpuLayers: model.gpuLayers,
          contextSize: context.contextSize,
          sequences: concurrency,
        },
        "model loaded",
      );
      return entry;
    } catch (err) {
      await model?.dispose().catch(() => undefined);
      const msg = (err as Error).message;
      if (err instanceof InsufficientMemoryError) {
        throw new BackendError("insufficient_vram", `model ${c.name}: not enough memory to load (${msg})`, {
          cause: err,
        });
      }
      failed.set(path, msg);
      recomputeAdvertised();
      throw new BackendError("model_load_failed", `model ${c.name} failed to load: ${msg}`, { cause: err });
    }
  }

  function getLoaded(c: ModelCandidate): Promise<Loaded> {
    const path = c.path!;
    const hot = loaded.get(path);
    if (hot) return Promise.resolve(hot);
    let p = loading.get(path);
    if (!p) {
      p = load(c).finally(() => loading.delete(path));
      loading.set(path, p);
    }
    return p;
  }

  /**
   * A loaded model and one of its sequences. The model counts as in use from the moment acquire()
   * runs, synchronously after it is confirmed still loaded, so eviction, unloadAll() and
   * --unload-after-job (which only unload idle models, and drop them from `loaded` before
   * disposing) can never dispose it under the job; one unloaded in between is loaded again.
   */
  async function checkout(
    c: ModelCandidate,
    signal: AbortSignal,
  ): Promise<{ entry: Loaded; seq: LlamaContextSequence }> {
    for (;;) {
      const entry = await getLoaded(c);
      if (closed) throw new BackendError("backend_unavailable", "llama backend is closed");
      if (signal.aborted) throw new BackendError("aborted", "job aborted before it started");
      if (loaded.get(entry.path) !== entry) continue; // unloaded while we waited: load it again
      return { entry, seq: await acquire(entry, signal) };
    }
  }

  function acquire(entry: Loaded, signal: AbortSignal): Promise<LlamaContextSequence> {
    entry.active++;
    entry.lastUsed = Date.now();
    const seq = entry.free.pop();
    if (seq) return Promise.resolve(seq);
    return new Promise((resolve, reject) => {
      const waiter = (s: LlamaContextSequence) => {
        signal.removeEventListener("abort", onAbort);
        resolve(s);
      };
      const onAbort = () => {
        entry.waiters.splice(entry.waiters.indexOf(waiter), 1);
        entry.active--;
        reject(new BackendError("aborted", "job aborted while waiting for a free sequence"));
      };
      entry.waiters.push(waiter);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /**
   * One throwaway token on a fresh context: its first decode allocates the compute buffers,
   * which the first job should not pay for.
   */
  async function primeSequences(entry: Loaded): Promise<void> {
    const seq = entry.free.pop();
    if (!seq) return;
    entry.active++;
    try {
      const completion = new LlamaCompletion({ contextSequence: seq });
      try {
        await completion.generateCompletion(" ", { maxTokens: 1 });
      } finally {
        completion.dispose({ disposeSequence: false });
      }
    } catch {
      // Priming is an optimisation: a model that loads but cannot prime still serves jobs.
    } finally {
      await release(entry, seq);
    }
  }

  async function release(entry: Loaded, seq: LlamaContextSequence): Promise<void> {
    // A finished job leaves nothing behind for the next one on this sequence.
    await seq.clearHistory().catch(() => undefined);
    entry.lastUsed = Date.now();
    const next = entry.waiters.shift();
    if (next) return next(seq);
    entry.free.push(seq);
    entry.active--;
    if (entry.active === 0 && (entry.unloadWhenIdle || opts.unloadAfterJob)) await unload(entry);
  }

  /**
   * The tokens LlamaCompletion feeds for `prompt`: its tokenization (leading space trimmed when a
   * beginning token is prepended, as LlamaCompletion does) and that token, if the vocabulary has one.
   */
  function promptInput(model: LlamaModel, prompt: string): { tokens: Token[]; fed: number } {
    const bos = beginningToken(model);
    const tokens = model.tokenize(prompt, false, bos === null ? undefined : "trimLeadingSpace");
    return { tokens, fed: tokens.length + (bos === null ? 0 : 1) };
  }

  async function run(
    entry: Loaded,
    seq: LlamaContextSequence,
    req: InferenceRequest,
    signal: AbortSignal,
  ): Promise<Omit<InferenceResult, "model" | "backend" | "durationMs">> {
    const { tokens, fed } = promptInput(entry.model, req.prompt);
    const contextSize = seq.contextSize;
    // The receipt's prompt_hash covers the whole prompt, so the model must see all of it: refuse
    // rather than let node-llama-cpp drop tokens from the start to make room.
    if (fed + 1 > contextSize) {
      throw new BackendError(
        "inference_failed",
        `prompt is ${fed} tokens; the context holds ${contextSize} tokens per sequence, leaving no room ` +
          `for a generated token (raise --context-size or shorten the prompt)`,
      );
    }
    // Generation stops when the context is full instead of shifting prompt tokens out.
    const maxTokens = Math.min(req.maxTokens, contextSize - fed);
    let completionTokens = 0;
    const completion = new LlamaCompletion({ contextSequence: seq });
    try {
      const greedy = req.temperature <= 0;
      const r = await completion.generateCompletionWithMeta(tokens, {
        maxTokens,
        temperature: greedy ? 0 : req.temperature,
        ...(greedy || req.topP === undefined ? {} : { topP: req.topP }),
        ...(greedy || req.seed === undefined ? {} : { seed: req.seed }),
        ...(req.stop.length > 0 ? { customStopTriggers: req.stop } : {}),
        // Input may fill the context up to one token (checked above), and it is never shifted.
        contextShiftSize: 1,
        disableContextShift: true,
        onToken: (t) => {
          completionTokens += t.length;
        },
        signal,
        stopOnAbortSignal: false,
      });
      assertWholePrompt(seq, entry.model, tokens);
      const reason = r.metadata.stopReason;
      return {
        output: r.response,
        promptTokens: fed,
        completionTokens,
        stopReason:
          reason === "eogToken"
            ? "eos"
            : reason === "maxTokens"
              ? "maxTokens"
              : reason === "customStopTrigger" || reason === "stopGenerationTrigger"
                ? "stop"
                : reason === "abort"
                  ? "aborted"
                  : "other",
      };
    } finally {
      completion.dispose({ disposeSequence: false });
    }
  }

  const backend: LlamaBackend = {
    name: "llama",
    get gpuType() {
      return llama ? llama.gpu : null;
    },
    async init() {
      // What can be served is known from the files alone: the runtime starts meanwhile, and
      // whoever needs it (a job, warm-up) waits for it.
      ensureRuntime().catch(() => undefined);
      await scan();
    },
    async warm(names, signal) {
      await ensureRuntime();
      const warmed: string[] = [];
      const fits = (c: ModelCandidate) =>
        budget === null ||
        [...loaded.values()].reduce((sum, l) => sum + l.sizeBytes, 0) + (c.sizeBytes ?? 0) <= budget;
      for (const name of names) {
        if (signal.aborted || closed) break;
        const c = lookup(name);
        if (!c?.path || failed.has(c.path)) continue;
        if (!loaded.has(c.path) && (loaded.size >= maxLoaded || !fits(c))) continue; // as many as fit
        try {
          const entry = await getLoaded(c);
          await primeSequences(entry);
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
      await scan();
      await retryUnverified();
    },
    listModels(): ModelInfo[] {
      return advertised.map((name) => {
        const c = lookup(name);
        return { name, sizeBytes: c?.sizeBytes ?? null, source: c?.uri ?? c?.path ?? "" };
      });
    },
    hasModel(name) {
      return lookup(name) !== null;
    },
    hasExactModel(name) {
      return lookup(name, { plainFallback: false }) !== null;
    },
    isLoaded(name) {
      const c = lookup(name);
      return c?.path ? loaded.has(c.path) : false;
    },
    async generate(req, signal) {
      if (closed) throw new BackendError("backend_unavailable", "llama backend is closed");
      const t0 = performance.now();
      await ensureRuntime();
      const c = resolveModel(req.model, known());
      if (!c) {
        throw new BackendError(
          "model_not_found",
          `model ${JSON.stringify(req.model)} is not available here (have: ${advertised.join(", ") || "none"})`,
        );
      }
      if (refused.includes(c)) {
        throw new BackendError(
          "model_not_found",
          `model ${JSON.stringify(req.model)} is not offered: ${c.path}: ${reported.get(c.path!) ?? "refused"}`,
        );
      }
      const prior = failed.get(c.path!);
      if (prior) throw new BackendError("model_load_failed", `model ${c.name} failed to load: ${prior}`);
      if (signal.aborted) throw new BackendError("aborted", "job aborted before it started");
      const { entry, seq } = await checkout(c, signal);
      try {
        const out = await run(entry, seq, req, signal);
        return { ...out, model: req.model, backend: "llama", durationMs: Math.round(performance.now() - t0) };
      } catch (err) {
        if (err instanceof BackendError) throw err;
        if (signal.aborted)
          throw new BackendError("aborted", "job aborted during generation", { cause: err });
        throw new BackendError("inference_failed", `inference failed: ${(err as Error).message}`, {
          cause: err,
        });
      } finally {
        await release(entry, seq);
      }
    },
    async unloadAll() {
      await Promise.allSettled([...loading.values()]);
      for (const entry of [...loaded.values()]) {
        if (entry.active === 0) await unload(entry);
        else entry.unloadWhenIdle = true; // busy: drop it when its last job ends
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      await Promise.allSettled([...loading.values()]);
      for (const entry of [...loaded.values()]) await unload(entry);
      // After a model failed to load, node-llama-cpp's dispose() can stay pending forever (seen
      // with 3.21.1); the process frees everything on exit anyway, so do not hang shutdown on it.
      if (llama) {
        let timer: NodeJS.Timeout | undefined;
        const settled = await Promise.race([
          llama.dispose().then(
            () => true,
            () => true,
          ),
          new Promise<false>((r) => {
            timer = setTimeout(() => r(false), 2000); // kept ref'd: an idle loop would exit mid-close
          }),
        ]);
        clearTimeout(timer);
        if (!settled) log.debug({ event: "llama_dispose_timeout" }, "llama runtime did not dispose in 2 s");
      }
      llama = null;
    },
  };
  return backend;
}
