// The node-llama-cpp runtime: started once (GPU when asked and usable, else CPU), shared by every
// model the pool loads, disposed on close. It owns the Llama instance and nothing else.
import { getLlama, type Llama, LlamaLogLevel } from "node-llama-cpp";
import type { Logger } from "../../log.js";
import { BackendError, type ComputeInfo, type ComputeKind } from "../types.js";
import { cudaBackendCandidates } from "./cuda-binaries.js";

export interface RuntimeOptions {
  threads: number;
  gpu: "auto" | false;
  log: Logger;
}

export class LlamaRuntime {
  #llama: Llama | null = null;
  /** The runtime starting (or started): registration does not wait for it, jobs and warm-up do. */
  #starting: Promise<Llama> | null = null;
  /** Why the GPU runtime was not used, when getLlama with gpu "auto" threw. */
  #gpuError: string | null = null;

  constructor(private readonly opts: RuntimeOptions) {}

  /** The GPU type in use ("cuda", ...) or false for CPU; null before it started or after dispose. */
  get gpuType(): string | false | null {
    return this.#llama ? this.#llama.gpu : null;
  }

  /** What the started runtime computes on: the only word on what may be advertised. */
  async compute(): Promise<ComputeInfo> {
    const l = await this.ensure();
    const kind: ComputeKind = l.gpu === false ? "cpu" : l.gpu;
    const devices = kind === "cpu" ? [] : await l.getGpuDeviceNames().catch(() => []);
    const vram = kind === "cpu" ? null : await l.getVramState().catch(() => null);
    return {
      kind,
      devices,
      vramTotalBytes: vram && vram.total > 0 ? vram.total : null,
      build: l.buildType,
      cpuByChoice: this.opts.gpu === false,
      gpuError: this.#gpuError,
    };
  }

  /** The runtime, started once; a failed start is tried again by the next caller. */
  ensure(): Promise<Llama> {
    this.#starting ??= this.#start().then(
      (l) => {
        this.#llama = l;
        return l;
      },
      (err: unknown) => {
        this.#starting = null;
        throw new BackendError(
          "backend_unavailable",
          `node-llama-cpp could not start (${(err as Error).message}); reinstall node-llama-cpp or use --backend ollama`,
          { cause: err },
        );
      },
    );
    return this.#starting;
  }

  async #start(): Promise<Llama> {
    const { log, threads } = this.opts;
    const logger = (level: LlamaLogLevel, message: string) => {
      const text = message.trim();
      if (!text) return;
      if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal)
        log.error({ event: "llama_cpp" }, text);
      else if (level === LlamaLogLevel.warn) log.warn({ event: "llama_cpp" }, text);
      else log.debug({ event: "llama_cpp" }, text);
    };
    const base = { build: "never" as const, maxThreads: threads, logLevel: LlamaLogLevel.warn, logger };
    if (this.opts.gpu === false) {
      const l = await getLlama({ ...base, gpu: false });
      log.info(
        { event: "llama_runtime", gpu: false, threads },
        "llama runtime on CPU (GPU disabled by config)",
      );
      return l;
    }
    try {
      // A CUDA backend built for this host (`gpu build`) is what the operator means to use: ask
      // for CUDA by name. "auto" tries CUDA only where it finds cuBLAS in the usual directories,
      // and misses one the build found elsewhere (pip's nvidia wheels, through its RUNPATH).
      const local = await cudaBackendCandidates()
        .then((c) => c.some((x) => x.source === "localBuild"))
        .catch(() => false);
      const l = await getLlama({ ...base, gpu: local ? "cuda" : "auto" });
      // On the CPU here, whether a GPU is meant to be used is decided by the caller
      // (src/compute-check.ts): it knows what NVML sees and what the operator allowed.
      if (l.gpu === false) {
        log.info(
          { event: "llama_runtime", gpu: false, threads },
          "llama runtime on CPU (no GPU backend started)",
        );
      } else {
        const devices = await l.getGpuDeviceNames().catch(() => []);
        log.info({ event: "llama_runtime", gpu: l.gpu, devices }, `llama runtime on ${l.gpu}`);
      }
      return l;
    } catch (err) {
      this.#gpuError = (err as Error).message.split("\n")[0] ?? "unknown error";
      const l = await getLlama({ ...base, gpu: false });
      log.info(
        { event: "llama_runtime", gpu: false, threads, err: this.#gpuError },
        "GPU runtime failed to start: llama runtime on CPU",
      );
      return l;
    }
  }

  /** Dispose the runtime if it started; call after every model is unloaded. */
  async dispose(): Promise<void> {
    const llama = this.#llama;
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
      if (!settled)
        this.opts.log.debug({ event: "llama_dispose_timeout" }, "llama runtime did not dispose in 2 s");
    }
    this.#llama = null;
  }
}
