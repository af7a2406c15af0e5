// Contract between the miner loop and an inference backend. One job in, one result out.
import type { BackendProgress } from "./activity.js";

export type { BackendActivity, BackendProgress } from "./activity.js";

export type BackendName = "llama" | "ollama";

/** A validated inference request (see src/miner/screening.ts for the bounds). */
export interface InferenceRequest {
  model: string;
  prompt: string;
  maxTokens: number;
  temperature: number;
  topP?: number | undefined;
  seed?: number | undefined;
  stop: string[];
}

export interface InferenceResult {
  output: string;
  /** The model that produced the output: always the one asked for. */
  model: string;
  backend: BackendName;
  promptTokens: number;
  completionTokens: number;
  durationMs: number;
  /** Why generation stopped. */
  stopReason: "eos" | "maxTokens" | "stop" | "aborted" | "other";
}

export type BackendErrorCode =
  | "model_not_found"
  | "model_load_failed"
  | "backend_unavailable"
  | "inference_failed"
  | "aborted"
  | "insufficient_vram";

/** Every backend failure is one of these: the loop fails the job with `code` and `message`. */
export class BackendError extends Error {
  override readonly name = "BackendError";
  constructor(
    readonly code: BackendErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface ModelInfo {
  name: string;
  /** Bytes on disk, when known (for VRAM admission). */
  sizeBytes: number | null;
  source: string;
}

/** What inference actually computes on, as the runtime itself reports it (not NVML). */
export type ComputeKind = "cuda" | "vulkan" | "metal" | "cpu";

export interface ComputeInfo {
  kind: ComputeKind;
  /** Device names the runtime sees, in its order (empty on the CPU). */
  devices: string[];
  /** Device memory the runtime sees, all devices together (null on the CPU or when unknown). */
  vramTotalBytes: number | null;
  /** Which binary: node-llama-cpp's "localBuild" (e.g. `gpu build`) or "prebuilt"; null when unknown. */
  build: string | null;
  /** On the CPU: whether that was asked for (--gpu cpu) rather than the GPU runtime failing. */
  cpuByChoice: boolean;
  /** Why the GPU runtime did not start, when it was tried and failed with an error. */
  gpuError: string | null;
}

export interface Backend {
  readonly name: BackendName;
  /** Load the runtime, scan models. Throws BackendError("backend_unavailable") with advice. */
  init(): Promise<void>;
  /** Models this backend can serve right now: exactly what is advertised to the coordinator. */
  listModels(): ModelInfo[];
  hasModel(name: string): boolean;
  /**
   * Whether `name` is served under exactly that name, with no tag fallback (`NAME:TAG` answered by
   * a lone `NAME.gguf`). Absent: every hasModel() match is exact.
   */
  hasExactModel?(name: string): boolean;
  /**
   * Start the runtime (if not yet) and say what it computes on. Absent: the backend runs
   * elsewhere (Ollama) and cannot tell; the GPUs NVML sees are then taken at their word.
   */
  compute?(): Promise<ComputeInfo>;
  /** Run one job. Rejects with BackendError; rejects with code "aborted" when `signal` fires. */
  generate(req: InferenceRequest, signal: AbortSignal): Promise<InferenceResult>;
  /** Look again for models (new files, a model map edit, Ollama pulls); listModels() follows. */
  refresh?(): Promise<void>;
  /**
   * Start the runtime and load these models (in this order, as many as fit) so the first job
   * runs as fast as the rest. Resolves with the names now warm; never rejects for one model.
   */
  warm?(names: string[], signal: AbortSignal): Promise<string[]>;
  /**
   * What takes long now (the runtime starting, a preflight, a load) and its last sign of progress:
   * /healthz tells a slow load from a stuck one by it. Absent: nothing the backend does is watched.
   */
  progress?(): BackendProgress;
  /** Whether the model is loaded now (its memory is already taken): admission skips it. */
  isLoaded?(name: string): boolean;
  /** Drop loaded models (used for --unload-after-job and on shutdown). */
  unloadAll(): Promise<void>;
  close(): Promise<void>;
}
