// What this backend can serve: the models directory and map scanned (hf: entries downloaded),
// each file reported once, preflighted in a child before it is trusted in-process, and the names
// advertised. It owns every piece of bookkeeping about files; the pool asks it, never keeps its own.
import { join } from "node:path";
import { resolveModelFile } from "node-llama-cpp";
import type { Logger } from "../../log.js";
import { defaultCacheDir } from "../../paths.js";
import type { ActivityBoard } from "../activity.js";
import { BackendError } from "../types.js";
import {
  advertisedNames,
  fileChanges,
  fileIdOf,
  type ModelCandidate,
  readModelMap,
  resolveModel,
  type ScanResult,
  scanModels,
} from "./models.js";
import { type PreflightResult, preflightTimeoutMs, runPreflight } from "./preflight.js";

export interface CatalogOptions {
  modelsDir?: string | undefined;
  modelMapFile?: string | undefined;
  log: Logger;
  preflight?: boolean | undefined;
  preflightTimeoutMs?: ((sizeBytes: number | null) => number) | undefined;
  downloadDir?: string | undefined;
  downloadStallMs?: number | undefined;
  /** Where preflights report their start, progress and end (/healthz, logs). */
  activities?: ActivityBoard | undefined;
}

/** Same problem, other figures: a file still being copied in is not reported again every rescan. */
const sameKind = (a: string, b: string) => a.replace(/[\d.]+/g, "#") === b.replace(/[\d.]+/g, "#");

/** One model file as `run` judges it: servable, or why not. */
export interface ModelVerdict {
  name: string;
  path: string;
  servable: boolean;
  reason: string | null;
}

export class ModelCatalog {
  #candidates: ModelCandidate[] = [];
  #advertised: string[] = [];
  /** path → reason: models that failed preflight or load are no longer advertised. */
  readonly #failed = new Map<string, string>();
  readonly #preflighted = new Set<string>();
  /** path → reason: preflight ran out of time. Not advertised, not loaded; retried on refresh or a job. */
  readonly #unverified = new Map<string, string>();
  readonly #preflighting = new Map<string, Promise<PreflightResult>>();
  /** path → why it is not offered, as last seen: each file is reported once, not every rescan. */
  readonly #reported = new Map<string, string>();
  /** Files the last scan refused, so a job for one fails with the reason rather than "not here". */
  #refused: ModelCandidate[] = [];
  /** name → path: files deleted since they were offered, so a job for one is told so. */
  readonly #gone = new Map<string, string>();
  #lastListed: string | null = null;
  readonly #log: Logger;

  constructor(private readonly opts: CatalogOptions) {
    this.#log = opts.log;
  }

  /** The names offered to the coordinator. */
  get advertised(): readonly string[] {
    return this.#advertised;
  }

  /** Rescan the models directory and map, downloading `hf:` entries. */
  async scan(): Promise<void> {
    const result = this.#scanFiles();
    this.#take(await this.#downloadEntries(result.candidates));
  }

  /**
   * forJob for a job about to run, once its file is checked (one stat) to be the one the last scan
   * saw: a file rewritten, replaced, truncated or deleted since is scanned again first (directory
   * and map, no downloads), so the job gets the new file, or the scan's reason.
   */
  async forJobNow(name: string): Promise<ModelCandidate> {
    const c = resolveModel(name, this.#known());
    if (c?.path && (await fileIdOf(c.path)) !== (c.fileId ?? null)) this.#rescanLocal();
    return this.forJob(name);
  }

  /** Whether `path` still holds the file `fileId` names, as a candidate: a model loaded from it is current. */
  isCurrent(path: string, fileId: string | null): boolean {
    return this.#candidates.some((c) => c.path === path && (c.fileId ?? null) === fileId);
  }

  /** The directory and map scanned again, `hf:` entries kept as downloaded (no network). */
  #rescanLocal(): void {
    let result: ScanResult;
    try {
      result = this.#scanFiles();
    } catch {
      return; // the models directory or map is unreadable: the next refresh reports it
    }
    const downloaded = new Map(this.#candidates.filter((c) => c.uri && c.path).map((c) => [c.name, c]));
    this.#take(result.candidates.map((c) => (c.path ? c : (downloaded.get(c.name) ?? c))));
  }

  #scanFiles(): ScanResult {
    const mapEntries = this.opts.modelMapFile ? readModelMap(this.opts.modelMapFile) : [];
    const result = scanModels({ modelsDir: this.opts.modelsDir, mapEntries });
    this.#reportScan(result);
    return result;
  }

  /**
   * The scan's candidates become the catalog's. A file that is no longer the one seen before loses
   * its verdicts (a new file is preflighted like any other); a deleted one is logged once here, a
   * refused one was by #reportScan with the scan's reason.
   */
  #take(next: ModelCandidate[]): void {
    const refused = new Set(this.#refused.map((r) => r.path ?? ""));
    for (const ch of fileChanges(this.#candidates, next, refused)) {
      this.#failed.delete(ch.path);
      this.#preflighted.delete(ch.path);
      this.#unverified.delete(ch.path);
      if (ch.kind === "changed")
        this.#log.info(
          { event: "model_file_changed", model: ch.name, path: ch.path },
          "model file changed: the new file is preflighted before it is loaded; jobs already running finish on the weights in memory",
        );
      if (ch.kind !== "removed") continue;
      for (const o of this.#candidates) if (o.path === ch.path) this.#gone.set(o.name, ch.path);
      this.#log.warn(
        { event: "model_removed", model: ch.name, path: ch.path },
        `model file deleted: ${ch.name} is no longer offered`,
      );
    }
    for (const c of next) this.#gone.delete(c.name);
    this.#candidates = next;
    this.#recomputeAdvertised();
    const listed = [...this.#advertised].sort().join("\n");
    if (listed !== this.#lastListed) {
      this.#lastListed = listed;
      this.#log.info(
        { event: "models", models: this.#advertised },
        `${this.#advertised.length} model(s) available`,
      );
    }
  }

  /**
   * The usable file that serves `name`, resolved among every file seen (refused and failed ones
   * included), so that a broken NAME-TAG.gguf is never answered by a working NAME.gguf.
   */
  lookup(name: string, o: { plainFallback?: boolean } = {}): ModelCandidate | null {
    const c = resolveModel(name, this.#known(), o);
    return c && this.#usable().includes(c) ? c : null;
  }

  /**
   * The file a job for `name` is for, usable or not; throws model_not_found when there is none
   * or the scan refused it, model_load_failed when it failed before.
   */
  forJob(name: string): ModelCandidate {
    const c = resolveModel(name, this.#known());
    if (!c) {
      const gone = this.#gone.get(name);
      throw new BackendError(
        "model_not_found",
        `model ${JSON.stringify(name)} is not available here${gone ? `: its file ${gone} was deleted` : ""} ` +
          `(have: ${this.#advertised.join(", ") || "none"})`,
      );
    }
    if (this.#refused.includes(c)) {
      throw new BackendError(
        "model_not_found",
        `model ${JSON.stringify(name)} is not offered: ${c.path}: ${this.#reported.get(c.path!) ?? "refused"}`,
      );
    }
    const prior = this.#failed.get(c.path!);
    if (prior) throw new BackendError("model_load_failed", `model ${c.name} failed to load: ${prior}`);
    return c;
  }

  hasFailed(path: string): boolean {
    return this.#failed.has(path);
  }

  /** A load failed in-process: the file is no longer advertised. */
  markFailed(path: string, reason: string): void {
    this.#failed.set(path, reason);
    this.#recomputeAdvertised();
  }

  /** Before an in-process load: preflight `c` unless that was done (or is off); throws when it fails. */
  async assertVerified(c: ModelCandidate): Promise<void> {
    if (this.opts.preflight === false || this.#preflighted.has(c.path!)) return;
    const r = await this.#verify(c);
    if (!r.ok && r.timedOut) {
      throw new BackendError(
        "model_load_failed",
        `model ${c.name} is not verified yet (${r.reason}); it is tried again on the next job or refresh`,
      );
    }
    if (!r.ok) throw new BackendError("model_load_failed", `model ${c.name} failed to load: ${r.reason}`);
  }

  /** Retry the preflights that timed out before (on refresh). */
  async retryUnverified(): Promise<void> {
    for (const c of this.#candidates) {
      if (
        c.path &&
        this.#unverified.has(c.path) &&
        !this.#failed.has(c.path) &&
        this.opts.preflight !== false
      )
        await this.#verify(c);
    }
  }

  async #downloadEntries(list: ModelCandidate[]): Promise<ModelCandidate[]> {
    const log = this.#log;
    const out: ModelCandidate[] = [];
    for (const c of list) {
      if (c.path || !c.uri) {
        out.push(c);
        continue;
      }
      const directory = this.opts.downloadDir ?? join(defaultCacheDir(), "models");
      let lastPct = -10;
      // No overall deadline (models are large); a download that stalls is abandoned.
      const stallMs = this.opts.downloadStallMs ?? 30_000;
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

  #reportScan(result: ScanResult): void {
    const reported = this.#reported;
    const now = new Map<string, string>();
    for (const s of result.skipped) {
      now.set(s.path, s.reason);
      if (reported.has(s.path) && sameKind(reported.get(s.path)!, s.reason)) continue;
      this.#log.warn(
        { event: "model_skipped", model: s.name, path: s.path, reason: s.reason },
        `model ${s.name} not offered: ${s.reason}`,
      );
    }
    for (const c of result.candidates) {
      if (!c.path || !c.sizeUnchecked) continue;
      const note = `size unchecked: ${c.sizeUnchecked}`;
      now.set(c.path, note);
      if (reported.get(c.path) !== note)
        this.#log.debug(
          { event: "model_size_unchecked", model: c.name, path: c.path, reason: c.sizeUnchecked },
          "model offered without a size check; the preflight load decides",
        );
    }
    // A file that comes back broken after being fixed (or removed) is reported again.
    reported.clear();
    for (const [k, v] of now) reported.set(k, v);
    this.#refused = result.skipped.map((s) => ({
      name: s.name,
      path: s.path,
      uri: null,
      sizeBytes: null,
      origin: s.origin,
    }));
  }

  #recomputeAdvertised(): void {
    this.#advertised = advertisedNames(this.#usable()).filter((n) => this.lookup(n) !== null);
  }

  #known(): ModelCandidate[] {
    return [...this.#candidates.filter((x) => x.path), ...this.#refused];
  }

  #usable(): ModelCandidate[] {
    return this.#candidates.filter(
      (c) => c.path && !this.#failed.has(c.path) && !this.#unverified.has(c.path),
    );
  }

  /**
   * Every file the last scan saw, each with the verdict `run` would reach: refused by the scan
   * (with its reason), or preflighted now (loads, fails, or timed out). What `doctor` lists.
   */
  async inspect(): Promise<ModelVerdict[]> {
    const out: ModelVerdict[] = this.#refused.map((c) => ({
      name: c.name,
      path: c.path ?? "",
      servable: false,
      reason: this.#reported.get(c.path ?? "") ?? "refused",
    }));
    for (const c of this.#candidates.filter((x) => x.path)) {
      const r = await this.#verify(c);
      out.push({ name: c.name, path: c.path!, servable: r.ok, reason: r.ok ? null : r.reason });
    }
    return out;
  }

  /**
   * Preflight `c` once (concurrent callers share the run). A broken model is failed for good; one
   * whose preflight timed out is only "not verified yet": unadvertised until a later try succeeds.
   */
  async #verify(c: ModelCandidate): Promise<PreflightResult> {
    const path = c.path!;
    const key = `${path}\0${c.fileId ?? ""}`;
    let p = this.#preflighting.get(key);
    if (!p) {
      const limit = (this.opts.preflightTimeoutMs ?? preflightTimeoutMs)(c.sizeBytes);
      const run = this.opts.activities?.start("preflight", {
        model: c.name,
        path,
        sizeBytes: c.sizeBytes,
        reportsProgress: true,
      });
      p = runPreflight(path, limit, run?.progress)
        .then((r) => {
          run?.end(r.ok ? "ok" : r.timedOut ? "timed_out" : "failed", r.ok ? {} : { reason: r.reason });
          return r;
        })
        .finally(() => this.#preflighting.delete(key));
      this.#preflighting.set(key, p);
    }
    const r = await p;
    if ((await fileIdOf(path)) !== (c.fileId ?? null)) {
      // The file changed while it was checked: the verdict is about a file no longer there.
      this.#rescanLocal();
      return { ok: false, timedOut: true, reason: `${path} changed while it was being checked` };
    }
    if (r.ok) {
      this.#preflighted.add(path);
      this.#unverified.delete(path);
    } else if (r.timedOut) {
      if (!this.#unverified.has(path))
        this.#log.warn(
          { event: "model_unverified", model: c.name, path, reason: r.reason },
          "model preflight timed out: not offered until a later preflight succeeds",
        );
      this.#unverified.set(path, r.reason);
    } else {
      this.#unverified.delete(path);
      this.#failed.set(path, r.reason);
    }
    this.#recomputeAdvertised();
    return r;
  }
}
