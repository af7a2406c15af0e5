// Truth in advertising: what the inference runtime computes on (not what NVML sees) decides the
// platform and GPUs a miner advertises, and whether it may mine at all. Pure policy, no I/O: the
// runtime's facts come from the backend, the GPUs' from NVML, the diagnosis text from the caller.
import type { ComputeInfo } from "../backends/types.js";
import type { Platform } from "../coordinator/types.js";

/** A card this miner owns, as NVML reports it (healthy ones only). */
export interface OwnedGpu {
  name: string;
  memoryTotalMiB: number | null;
  uuid: string;
}

export type ComputeProblem = "gpu_runtime_missing" | "gpu_device_mismatch" | "gpu_kernels_unsupported";

export type ComputeVerdict =
  | {
      ok: true;
      platform: Platform;
      /** Advertise the NVML cards: only when inference really runs on them. */
      advertiseGpus: boolean;
      compute: ComputeInfo | null;
      /** Said once at start when the operator should know (CPU by opt-in, Vulkan). */
      note: string | null;
    }
  | { ok: false; code: ComputeProblem; message: string; compute: ComputeInfo };

const PLATFORM: Record<ComputeInfo["kind"], Platform> = {
  cuda: "CUDA",
  vulkan: "Vulkan",
  metal: "Metal",
  cpu: "CPU",
};

/** A runtime's memory may differ from NVML's total by what the driver reserves: a few percent. */
const VRAM_TOLERANCE = 0.1;

const norm = (name: string) => name.trim().replace(/\s+/g, " ").toLowerCase();

export function judgeCompute(
  gpus: readonly OwnedGpu[],
  compute: ComputeInfo | null,
  opts: { allowCpu: boolean },
): ComputeVerdict {
  // A backend that cannot tell (Ollama computes in its own process): NVML's word is all there is.
  if (compute === null)
    return { ok: true, platform: gpus.length > 0 ? "CUDA" : "CPU", advertiseGpus: true, compute, note: null };
  if (compute.kind === "cpu") {
    if (gpus.length === 0) return { ok: true, platform: "CPU", advertiseGpus: false, compute, note: null };
    if (compute.cpuByChoice)
      return {
        ok: true,
        platform: "CPU",
        advertiseGpus: false,
        compute,
        note: `inference on the CPU (--gpu cpu): ${describe(gpus)} not advertised`,
      };
    if (opts.allowCpu)
      return {
        ok: true,
        platform: "CPU",
        advertiseGpus: false,
        compute,
        note: `no GPU runtime: mining on the CPU (--allow-cpu-inference); ${describe(gpus)} not advertised`,
      };
    return {
      ok: false,
      code: "gpu_runtime_missing",
      message: `NVML sees ${describe(gpus)} but node-llama-cpp started on the CPU`,
      compute,
    };
  }
  const mismatch = deviceMismatch(gpus, compute);
  if (mismatch) return { ok: false, code: "gpu_device_mismatch", message: mismatch, compute };
  return {
    ok: true,
    platform: PLATFORM[compute.kind],
    advertiseGpus: gpus.length > 0,
    compute,
    note:
      compute.kind === "cuda"
        ? null
        : `inference on ${PLATFORM[compute.kind]} (${compute.devices.join(", ") || "no device named"}), not CUDA`,
  };
}

/** Why the runtime's devices are not the cards NVML says this miner owns; null when they are. */
function deviceMismatch(gpus: readonly OwnedGpu[], compute: ComputeInfo): string | null {
  if (gpus.length === 0) return null; // no NVML facts to hold the runtime to
  const want = gpus.map((g) => norm(g.name)).sort();
  const have = compute.devices.map(norm).sort();
  const runtime = `${PLATFORM[compute.kind]} runtime`;
  // Vulkan also lists software and integrated devices: each owned card must be among them.
  const namesOk =
    compute.kind === "vulkan"
      ? want.every((n) => have.includes(n))
      : want.length === have.length && want.every((n, i) => n === have[i]);
  if (!namesOk)
    return `this miner owns ${describe(gpus)} (NVML) but its ${runtime} computes on ${compute.devices.length > 0 ? compute.devices.join(", ") : "no named device"}`;
  const nvmlMiB = gpus.reduce((sum, g) => sum + (g.memoryTotalMiB ?? Number.NaN), 0);
  if (compute.kind !== "vulkan" && compute.vramTotalBytes !== null && Number.isFinite(nvmlMiB)) {
    const runtimeMiB = compute.vramTotalBytes / 2 ** 20;
    if (Math.abs(runtimeMiB - nvmlMiB) > nvmlMiB * VRAM_TOLERANCE)
      return `this miner owns ${describe(gpus)} with ${nvmlMiB} MiB (NVML) but its ${runtime} sees ${Math.round(runtimeMiB)} MiB: another card`;
  }
  return null;
}

function describe(gpus: readonly OwnedGpu[]): string {
  const names = [...new Set(gpus.map((g) => g.name))];
  return gpus.length === 1 ? `1 GPU (${names[0]})` : `${gpus.length} GPUs (${names.join(", ")})`;
}
