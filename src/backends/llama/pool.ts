// Loaded models and their sequences. One context per loaded model with `concurrency` sequences:
// parallel jobs batch together. Models stay hot in an LRU cache bounded by count and by a VRAM
// budget (file size as the estimate); only idle models are evicted. Weights are read into memory,
// never mapped, so a model file changed under a loaded model cannot fault the process (SIGBUS);
// each model remembers which file it was loaded from and is retired when that file changes.
import {
  InsufficientMemoryError,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaModel,
} from "node-llama-cpp";
import type { Logger } from "../../log.js";
import { BackendError } from "../types.js";
import { primeSequence } from "./generate.js";
import { fileIdOf, type ModelCandidate } from "./models.js";
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
  /** The file it was loaded from (fileIdOf), the same before and after the load. */
  fileId: string | null;
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
  /** Models whose file changed while jobs ran on them: unloaded when their last job ends. */
  readonly #retired = new Set<Loaded>();
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
    if (hot && hot.fileId === (c.fileId ?? null)) return Promise.resolve(hot);
    const key = `${path}\0${c.fileId ?? ""}`;
    let p = this.#loading.get(key);
    if (!p) {
      p = this.#load(c).finally(() => this.#loading.delete(key));
      this.#loading.set(key, p);
    }
    return p;
  }

  /**
   * Retire the loaded models whose file is no longer the one they were loaded from (`isCurrent`
   * says): new jobs load the file anew; an idle model is unloaded now, a busy one when its last job
   * ends (its weights are in memory, so those jobs finish). Resolves with the paths unloaded now.
   */
  async retireStale(isCurrent: (path: string, fileId: string | null) => boolean): Promise<string[]> {
    const unloaded: string[] = [];
    for (const entry of [...this.#loaded.values()]) {
      if (isCurrent(entry.path, entry.fileId)) continue;
      this.#loaded.delete(entry.path);
      this.opts.log.info(
        { event: "model_retired", path: entry.path, runningJobs: entry.active },
        "model file changed or removed: the loaded model is dropped once its running jobs end",
      );
      if (entry.active > 0) {
        entry.unloadWhenIdle = true;
        this.#retired.add(entry);
        continue;
      }
      await this.#unload(entry);
      unloaded.push(entry.path);
    }
    return unloaded;
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
    entry.lastUsed = performance.now();
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
    for (const entry of [...this.#loaded.values(), ...this.#retired]) await this.#unload(entry);
  }

  #used(): number {
    return [...this.#loaded.values()].reduce((s, l) => s + l.sizeBytes, 0);
  }

  #acquire(entry: Loaded, signal: AbortSignal): Promise<LlamaContextSequence> {
    entry.active++;
    entry.lastUsed = performance.now();
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
    if (this.#loaded.get(entry.path) === entry) this.#loaded.delete(entry.path);
    this.#retired.delete(entry);
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
    await this.#assertSameFile(c, "before it was loaded");
    await this.#makeRoom(size);
    const l = await this.opts.runtime.ensure();
    const t0 = performance.now();
    let model: LlamaModel | undefined;
    try {
      // Read, not mapped: a mapped file rewritten or truncated under the process faults it (SIGBUS,
      // exit 135, nothing logged). On a GPU the offloaded layers are copied to VRAM either way; what
      // stays on the CPU (at least the token embeddings) is then private memory (docs/models.md).
      model = await l.loadModel({ modelPath: path, useMmap: false });
      await this.#assertSameFile(c, "while it was being loaded");
      const train = model.trainContextSize || DEFAULT_CONTEXT_CAP;
      const contextSize = this.opts.contextSize ?? Math.min(train, DEFAULT_CONTEXT_CAP);
      const context = await model.createContext({ sequences: concurrency, contextSize, threads });
      const free: LlamaContextSequence[] = [];
      for (let i = 0; i < concurrency; i++) free.push(context.getSequence());
      const entry: Loaded = {
        path,
        fileId: c.fileId ?? null,
        model,
        context,
        free,
        waiters: [],
        active: 0,
        lastUsed: performance.now(),
        sizeBytes: size,
        unloadWhenIdle: false,
      };
      const older = this.#loaded.get(path);
      if (older) await this.retireStale((p, id) => p !== path || id === entry.fileId);
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
      if (err instanceof BackendError) throw err;
      await this.#assertSameFile(c, "while it was being loaded"); // then the file is not to blame
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

  /** Throws when the file at c.path is no longer the one `c` was checked as (fileIdOf). */
  async #assertSameFile(c: ModelCandidate, when: string): Promise<void> {
    if ((await fileIdOf(c.path!)) === (c.fileId ?? null)) return;
    throw new BackendError(
      "model_load_failed",
      `model ${c.name}: its file ${c.path} changed ${when}; the next job loads the file as it is then`,
    );
  }
}
