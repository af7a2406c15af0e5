// The node-llama-cpp runtime: started once (GPU when asked and usable, else CPU), shared by every
// model the pool loads, disposed on close. It owns the Llama instance and nothing else.
import { getLlama, type Llama, LlamaLogLevel } from "node-llama-cpp";
import type { Logger } from "../../log.js";
import { BackendError } from "../types.js";

export interface RuntimeOptions {
  threads: number;
  gpu: "auto" | false;
  log: Logger;
}

export class LlamaRuntime {
  #llama: Llama | null = null;
  /** The runtime starting (or started): registration does not wait for it, jobs and warm-up do. */
  #starting: Promise<Llama> | null = null;

  constructor(private readonly opts: RuntimeOptions) {}

  /** The GPU type in use ("cuda", ...) or false for CPU; null before it started or after dispose. */
  get gpuType(): string | false | null {
    return this.#llama ? this.#llama.gpu : null;
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
