// Loaded models and their sequences. One context per loaded model with `concurrency` sequences:
// parallel jobs batch together. Models stay hot in an LRU cache bounded by count and by a VRAM
// budget (file size as the estimate); only idle models are evicted.
import {
  InsufficientMemoryError,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaModel,
} from "node-llama-cpp";
import type { Logger } from "../../log.js";
import { BackendError } from "../types.js";
import { primeSequence } from "./generate.js";
import type { ModelCandidate } from "./models.js";
import type { LlamaRuntime } from "./runtime.js";

const DEFAULT_CONTEXT_CAP = 4096;

/** What the pool needs from the catalog: the preflight gate and where a failed load is recorded. */
export interface PoolCatalog {
  assertVerified(c: ModelCandidate): Promise<void>;
  markFailed(path: string, reason: string): void;
}

export interface PoolOptions {
  threads: number;
  concurrency: number;
  maxLoadedModels: number;
  vramBudgetBytes: number | null;
  contextSize?: number | undefined;
  unloadAfterJob?: boolean | undefined;
  log: Logger;
  runtime: LlamaRuntime;
  catalog: PoolCatalog;
}

export interface Loaded {
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

export class ModelPool {
  readonly #loaded = new Map<string, Loaded>();
  readonly #loading = new Map<string, Promise<Loaded>>();
  #closed = false;

  constructor(private readonly opts: PoolOptions) {}

  get closed(): boolean {
    return this.#closed;
  }

  isLoaded(path: string): boolean {
    return this.#loaded.has(path);
  }

  /** Warm-up loads only what fits now (count and budget) without evicting anything. */
  hasRoomFor(c: ModelCandidate): boolean {
    const budget = this.opts.vramBudgetBytes;
    const fits = budget === null || this.#used() + (c.sizeBytes ?? 0) <= budget;
    return this.#loaded.size < this.opts.maxLoadedModels && fits;
  }

  /** The model loaded (or being loaded) for `c`; concurrent callers share one load. */
  get(c: ModelCandidate): Promise<Loaded> {
    const path = c.path!;
    const hot = this.#loaded.get(path);
    if (hot) return Promise.resolve(hot);
    let p = this.#loading.get(path);
    if (!p) {
      p = this.#load(c).finally(() => this.#loading.delete(path));
      this.#loading.set(path, p);
    }
    return p;
  }

  /**
   * A loaded model and one of its sequences. The model counts as in use from the moment acquire()
   * runs, synchronously after it is confirmed still loaded, so eviction, unloadAll() and
   * --unload-after-job (which only unload idle models, and drop them from `loaded` before
   * disposing) can never dispose it under the job; one unloaded in between is loaded again.
   */
  async checkout(
    c: ModelCandidate,
    signal: AbortSignal,
  ): Promise<{ entry: Loaded; seq: LlamaContextSequence }> {
    for (;;) {
      const entry = await this.get(c);
      if (this.#closed) throw new BackendError("backend_unavailable", "llama backend is closed");
      if (signal.aborted) throw new BackendError("aborted", "job aborted before it started");
      if (this.#loaded.get(entry.path) !== entry) continue; // unloaded while we waited: load it again
      return { entry, seq: await this.#acquire(entry, signal) };
    }
  }

  async release(entry: Loaded, seq: LlamaContextSequence): Promise<void> {
    // A finished job leaves nothing behind for the next one on this sequence.
    await seq.clearHistory().catch(() => undefined);
    entry.lastUsed = Date.now();
    const next = entry.waiters.shift();
    if (next) return next(seq);
    entry.free.push(seq);
    entry.active--;
    if (entry.active === 0 && (entry.unloadWhenIdle || this.opts.unloadAfterJob)) await this.#unload(entry);
  }

  /** Prime one free sequence of `entry` (see primeSequence). */
  async prime(entry: Loaded): Promise<void> {
    const seq = entry.free.pop();
    if (!seq) return;
    entry.active++;
    try {
      await primeSequence(seq);
    } catch {
      // Priming is an optimisation: a model that loads but cannot prime still serves jobs.
    } finally {
      await this.release(entry, seq);
    }
  }

  async unloadAll(): Promise<void> {
    await Promise.allSettled([...this.#loading.values()]);
    for (const entry of [...this.#loaded.values()]) {
      if (entry.active === 0) await this.#unload(entry);
      else entry.unloadWhenIdle = true; // busy: drop it when its last job ends
    }
  }

  /** Refuse new checkouts, wait for loads under way, then unload everything, busy or not. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#loading.values()]);
    for (const entry of [...this.#loaded.values()]) await this.#unload(entry);
  }

  #used(): number {
    return [...this.#loaded.values()].reduce((s, l) => s + l.sizeBytes, 0);
  }

  #acquire(entry: Loaded, signal: AbortSignal): Promise<LlamaContextSequence> {
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

  async #unload(entry: Loaded): Promise<void> {
    this.#loaded.delete(entry.path);
    await entry.context.dispose().catch(() => undefined);
    await entry.model.dispose().catch(() => undefined);
    this.opts.log.info({ event: "model_unloaded", path: entry.path }, "model unloaded");
  }

  /** Evict idle models, least recently used first, until `incoming` bytes fit. */
  async #makeRoom(incoming: number): Promise<void> {
    const { maxLoadedModels, vramBudgetBytes: budget } = this.opts;
    const idle = () =>
      [...this.#loaded.values()].filter((l) => l.active === 0).sort((a, b) => a.lastUsed - b.lastUsed);
    while (this.#loaded.size >= maxLoadedModels || (budget !== null && this.#used() + incoming > budget)) {
      const victim = idle()[0];
      if (!victim) break; // everything is busy: go over the bound rather than fail a job
      await this.#unload(victim);
    }
  }

  async #load(c: ModelCandidate): Promise<Loaded> {
    const { concurrency, threads, vramBudgetBytes: budget, log } = this.opts;
    const path = c.path!;
    const size = c.sizeBytes ?? 0;
    if (budget !== null && size > budget) {
      throw new BackendError(
        "insufficient_vram",
        `model ${c.name} (${size} bytes) is larger than the VRAM budget (${budget} bytes)`,
      );
    }
    await this.opts.catalog.assertVerified(c);
    await this.#makeRoom(size);
    const l = await this.opts.runtime.ensure();
    const t0 = performance.now();
    let model: LlamaModel | undefined;
    try {
      model = await l.loadModel({ modelPath: path });
      const train = model.trainContextSize || DEFAULT_CONTEXT_CAP;
      const contextSize = this.opts.contextSize ?? Math.min(train, DEFAULT_CONTEXT_CAP);
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
      this.#loaded.set(path, entry);
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
      this.opts.catalog.markFailed(path, msg);
      throw new BackendError("model_load_failed", `model ${c.name} failed to load: ${msg}`, { cause: err });
    }
  }
}
