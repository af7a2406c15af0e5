// One check shared by `run`, `demo` and `doctor`: start the inference runtime, hold what it computes
// on against the GPUs NVML says this miner owns, and explain a refusal with what is missing on this
// host. `run` exits on a refusal; `doctor` shows the same words as its inference verdict.
import { join } from "node:path";
import type { explainCpuRuntime } from "./backends/llama/gpu-diagnosis.js";
import { BackendError, type ComputeInfo } from "./backends/types.js";
import type { Platform } from "./coordinator/types.js";
import { type ComputeVerdict, judgeCompute, type OwnedGpu } from "./gpu/compute-verdict.js";
import type { GpuSnapshot } from "./gpu/types.js";
import { defaultCacheDir } from "./paths.js";

export interface ComputeCheckInput {
  /** Start the runtime and say what it computes on (Backend.compute); null: it cannot tell (Ollama). */
  compute: (() => Promise<ComputeInfo>) | null;
  /** NVML's view of the cards this miner owns (null: no GPU source). */
  snapshot: GpuSnapshot | null;
  allowCpu: boolean;
  /**
   * Tests only (AITBC_TEST_COMPUTE=nvml with a fake NVML library): the fake driver has no CUDA
   * runtime behind it, so take NVML's cards as the runtime's devices. Inference itself is real.
   */
  assumeNvmlCompute?: boolean;
  /** Why the runtime is on the CPU, in words an operator can act on (gpu-diagnosis.ts). */
  explainCpu?: Explain<string>;
  /**
   * On a GPU runtime: why it cannot run kernels on these cards (no code for them in its binary, or a
   * warm-up decode that failed in a child), or null.
   */
  kernelProblem?: Explain<string | null>;
}

type Explain<T> = (
  gpus: readonly OwnedGpu[],
  snapshot: GpuSnapshot | null,
  compute: ComputeInfo,
) => Promise<T>;

export type ComputeCheck = ComputeVerdict | { ok: false; code: "runtime_unavailable"; message: string };

export function ownedGpus(snapshot: GpuSnapshot | null): OwnedGpu[] {
  return (snapshot?.devices ?? [])
    .filter((d) => !d.error)
    .map((d) => ({ name: d.name, memoryTotalMiB: d.memoryTotalMiB, uuid: d.uuid }));
}

export async function checkCompute(input: ComputeCheckInput): Promise<ComputeCheck> {
  const gpus = ownedGpus(input.snapshot);
  let compute: ComputeInfo | null = null;
  if (input.assumeNvmlCompute && gpus.length > 0) compute = nvmlAsCompute(gpus);
  else if (input.compute) {
    try {
      compute = await input.compute();
    } catch (err) {
      const message = err instanceof BackendError ? err.message : `inference runtime: ${String(err)}`;
      return { ok: false, code: "runtime_unavailable", message };
    }
  }
  const verdict = judgeCompute(gpus, compute, { allowCpu: input.allowCpu });
  if (
    verdict.ok &&
    verdict.compute &&
    verdict.advertiseGpus &&
    input.kernelProblem &&
    !input.assumeNvmlCompute
  ) {
    const problem = await input.kernelProblem(gpus, input.snapshot, verdict.compute).catch(() => null);
    if (problem)
      return { ok: false, code: "gpu_kernels_unsupported", message: problem, compute: verdict.compute };
  }
  if (verdict.ok || verdict.code !== "gpu_runtime_missing" || !input.explainCpu) return verdict;
  const why = await input
    .explainCpu(gpus, input.snapshot, verdict.compute)
    .catch((err: unknown) => `(could not tell why: ${(err as Error).message})`);
  return { ...verdict, message: `${verdict.message}: ${why}` };
}

function nvmlAsCompute(gpus: readonly OwnedGpu[]): ComputeInfo {
  const mib = gpus.reduce((sum, g) => sum + (g.memoryTotalMiB ?? 0), 0);
  return {
    kind: "cuda",
    devices: gpus.map((g) => g.name),
    vramTotalBytes: mib > 0 ? mib * 2 ** 20 : null,
    build: null,
    cpuByChoice: false,
    gpuError: null,
  };
}

/** Loaded only when asked (a GPU host, or a refusal to explain): a CPU host never reads ELF files. */
export const runtimeDiagnosis = {
  explainCpu: async (...a: Parameters<typeof explainCpuRuntime>) =>
    (await import("./backends/llama/gpu-diagnosis.js")).explainCpuRuntime(...a),
  // The fatbin says whether kernels for these cards exist; a warm-up decode in a child says they run.
  kernelProblem: async (...a: Parameters<typeof explainCpuRuntime>) =>
    (await (await import("./backends/llama/gpu-diagnosis.js")).cudaKernelProblem(...a)) ??
    (await import("./backends/llama/gpu-warmup.js")).gpuWarmupProblem(join(defaultCacheDir(), "warmup")),
};

/** What `run` would advertise, in the one shape `doctor`, `telemetry` and heartbeats share. */
export interface InferenceSummary {
  platform: Platform | null;
  backend: ComputeInfo["kind"] | "external" | null;
  devices: string[];
  /** The build node-llama-cpp loaded ("localBuild", "prebuilt"). */
  build: string | null;
  advertisesGpus: boolean;
  /** Said once at start (CPU by opt-in, Vulkan). */
  note: string | null;
  /** Why `run` would exit 69 here; null when it would mine. */
  refusal: { code: string; message: string } | null;
}

export function summarize(c: ComputeCheck): InferenceSummary {
  if (!c.ok) {
    const info = "compute" in c ? c.compute : null;
    return {
      platform: null,
      backend: info?.kind ?? null,
      devices: info?.devices ?? [],
      build: info?.build ?? null,
      advertisesGpus: false,
      note: null,
      refusal: { code: c.code, message: c.message },
    };
  }
  return {
    platform: c.platform,
    backend: c.compute?.kind ?? "external",
    devices: c.compute?.devices ?? [],
    build: c.compute?.build ?? null,
    advertisesGpus: c.advertiseGpus,
    note: c.note,
    refusal: null,
  };
}

/**
 * Start node-llama-cpp as `run` would (one thread, nothing loaded), check it against NVML's cards,
 * dispose it: how `doctor` and `telemetry --inference` answer without a miner running.
 */
export async function probeInference(o: {
  snapshot: GpuSnapshot | null;
  gpu: "auto" | "cpu";
  allowCpu: boolean;
}): Promise<ComputeCheck> {
  let LlamaRuntime: typeof import("./backends/llama/runtime.js").LlamaRuntime;
  try {
    ({ LlamaRuntime } = await import("./backends/llama/runtime.js"));
  } catch (err) {
    // node-llama-cpp is not installed (a host that serves through Ollama only) or cannot load.
    const why = (err as Error).message.split("\n")[0];
    return { ok: false, code: "runtime_unavailable", message: `node-llama-cpp cannot load: ${why}` };
  }
  const { silentLogger } = await import("./log.js");
  const runtime = new LlamaRuntime({
    threads: 1,
    gpu: o.gpu === "cpu" ? false : "auto",
    log: silentLogger(),
  });
  try {
    return await checkCompute({
      compute: () => runtime.compute(),
      snapshot: o.snapshot,
      allowCpu: o.allowCpu,
      ...runtimeDiagnosis,
    });
  } finally {
    await runtime.dispose();
  }
}
