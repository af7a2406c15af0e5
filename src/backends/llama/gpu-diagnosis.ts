// Why node-llama-cpp started on the CPU on a host whose NVML sees GPUs, in words an operator can
// act on: for each CUDA build it could have loaded, which runtime libraries the loader cannot find
// (asked of the loader itself) and whether its kernels can run on these cards with this driver.

import type { OwnedGpu } from "../../gpu/compute-verdict.js";
import { type CudaBinaryVerdict, cudaBinaryVerdict } from "../../gpu/cuda-compat.js";
import { neededLibraries } from "../../gpu/elf.js";
import { fatbinArchitectures } from "../../gpu/fatbin.js";
import { type LibraryProbe, probeLibraries } from "../../gpu/library-probe.js";
import type { GpuSnapshot } from "../../gpu/types.js";
import type { ComputeInfo } from "../types.js";
import { cudaBackendCandidates } from "./cuda-binaries.js";

/** What one CUDA build of node-llama-cpp needs and whether this host has it. */
export interface CudaBuildFacts {
  /** "local build", "prebuilt", "prebuilt CUDA 12 fallback". */
  label: string;
  /** CUDA major of the runtime it links (libcudart.so.N), null when it links none. */
  cudaMajor: number | null;
  /** The CUDA and driver libraries it needs, each as the loader answers. */
  libraries: LibraryProbe[];
  /** Whether its kernels can run on each owned card with this driver (empty: not read). */
  kernels: CudaBinaryVerdict[];
}

export interface CpuRuntimeFacts {
  builds: CudaBuildFacts[];
  /** The loader could not be asked (addon missing or too old). */
  probeUnavailable: boolean;
  gpuError: string | null;
}

/** Libraries a GPU backend gets from the host: CUDA's runtime, cuBLAS, the driver, Vulkan's loader. */
const HOST_LIBRARY = /^lib(cudart|cublas|cublasLt|cuda|vulkan)\.so(\.\d+)*$/;
const LABEL = { localBuild: "local build", prebuilt: "prebuilt", "prebuilt-cuda12": "prebuilt fallback" };

export async function gatherCpuRuntimeFacts(
  gpus: readonly OwnedGpu[],
  snapshot: GpuSnapshot | null,
  compute: ComputeInfo,
): Promise<CpuRuntimeFacts> {
  const builds: CudaBuildFacts[] = [];
  let probeUnavailable = false;
  for (const c of await cudaBackendCandidates()) {
    const needed = (await neededLibraries(c.library).catch(() => [])).filter((n) => HOST_LIBRARY.test(n));
    // libcublas.so.N loads libcublasLt.so.N: name it rather than leave it to dlerror's text.
    const lt = needed
      .filter((n) => n.startsWith("libcublas.so"))
      .map((n) => n.replace("libcublas", "libcublasLt"));
    const names = [...needed, ...lt];
    const probes = await probeLibraries(names);
    if (probes === null) probeUnavailable = true;
    const major = needed.map((n) => /^libcudart\.so\.(\d+)/.exec(n)?.[1]).find((m) => m !== undefined);
    builds.push({
      label: LABEL[c.source],
      cudaMajor: major === undefined ? null : Number(major),
      libraries: probes ?? [],
      kernels: await kernelVerdicts(c.library, gpus, snapshot),
    });
  }
  return { builds, probeUnavailable, gpuError: compute.gpuError };
}

async function kernelVerdicts(
  library: string,
  gpus: readonly OwnedGpu[],
  snapshot: GpuSnapshot | null,
): Promise<CudaBinaryVerdict[]> {
  const arch = await fatbinArchitectures(library).catch(() => null);
  if (!arch) return [];
  const out: CudaBinaryVerdict[] = [];
  for (const g of gpus) {
    const cc = snapshot?.devices.find((d) => d.uuid === g.uuid)?.computeCapability;
    if (!cc) continue;
    out.push(
      cudaBinaryVerdict(
        { sass: arch.sass, ptx: arch.ptx, sassTargets: arch.sassTargets, library: "libggml-cuda.so" },
        { computeCapability: cc, driverCudaVersion: snapshot?.cudaDriverVersion ?? null, name: g.name },
      ),
    );
  }
  return out;
}

/** The sentence `run` exits with and `doctor` shows: what is missing, then how to get it. */
export function explainCpuRuntimeFacts(f: CpuRuntimeFacts): string {
  if (f.builds.length === 0)
    return "no CUDA build of node-llama-cpp is installed (its optional @node-llama-cpp/linux-x64-cuda package is missing): reinstall with npm ci on linux-x64, or build one with `aitbc-native-miner gpu build`";
  const parts = f.builds.map((b) => {
    const missing = b.libraries.filter((l) => !l.found).map((l) => l.name);
    const bad = b.kernels.find((k) => !k.runs);
    const libs =
      missing.length > 0 ? `needs ${missing.join(", ")}, not found by the loader` : "finds its libraries";
    return `${buildName(b)} ${libs}${bad ? `, and ${bad.reason}` : ""}`;
  });
  if (f.probeUnavailable)
    parts.push("(the NVML addon could not ask the loader; rebuild it: npm run build:native)");
  if (f.gpuError) parts.push(`node-llama-cpp said: ${f.gpuError}`);

  const fixes: string[] = [];
  const missing = (b: CudaBuildFacts, re: RegExp) => b.libraries.some((l) => !l.found && re.test(l.name));
  if (f.builds.some((b) => missing(b, /^libcuda\.so/)))
    fixes.push(
      "make the NVIDIA driver's libcuda.so.1 visible (in a container: the NVIDIA Container Toolkit with NVIDIA_DRIVER_CAPABILITIES=compute,utility)",
    );
  // A build with machine code for every card is the one to complete; JIT from old PTX is a last resort.
  const native = f.builds.find((b) => b.kernels.length > 0 && b.kernels.every((k) => k.via === "sass"));
  const target = native ?? null;
  if (target && target.cudaMajor !== null && missing(target, /^libcu(dart|blas)/))
    fixes.push(installRuntime(target.cudaMajor));
  if (!target) {
    const major = f.builds.find((b) => b.cudaMajor !== null && missing(b, /^libcu(dart|blas)/))?.cudaMajor;
    fixes.push(
      `build a CUDA backend with machine code for this GPU: aitbc-native-miner gpu build (offline, needs nvcc and cuBLAS)${major ? `, and ${installRuntime(major)}` : ""}`,
    );
  }
  fixes.push('see docs/operations.md, "When the CUDA runtime is missing"');
  return `${parts.join("; ")}. To mine on the GPU: ${fixes.join("; ")}. To mine on the CPU instead (advertising no GPU): --allow-cpu-inference`;
}

function buildName(b: CudaBuildFacts): string {
  return `its ${b.label}${b.cudaMajor !== null ? ` (CUDA ${b.cudaMajor})` : ""}`;
}

function installRuntime(major: number): string {
  return `install the CUDA ${major} runtime and cuBLAS (Debian/Ubuntu with NVIDIA's CUDA repository: apt-get install ${cudaPackages(major)}; or use the image built from deploy/Dockerfile; under systemd, if they live outside the loader's path, add Environment=LD_LIBRARY_PATH=<their directory> in a drop-in)`;
}

/** NVIDIA's apt package names for the CUDA runtime and cuBLAS of a CUDA major (its .0 release). */
function cudaPackages(major: number): string {
  return `cuda-cudart-${major}-0 libcublas-${major}-0`;
}

/**
 * On a runtime that started on CUDA: whether the binary in use has kernels these cards can run with
 * this driver (a prebuilt without sm_90 code on an H200 with a 580 driver loads, then every kernel
 * launch fails). The binary in use: the local build, else the first prebuilt whose libraries load.
 * Null when it can (or cannot be told); else why not, with the fix.
 */
export async function cudaKernelProblem(
  gpus: readonly OwnedGpu[],
  snapshot: GpuSnapshot | null,
  compute: ComputeInfo,
): Promise<string | null> {
  if (compute.kind !== "cuda") return null;
  const facts = await gatherCpuRuntimeFacts(gpus, snapshot, compute);
  const candidates = await cudaBackendCandidates();
  const inUse = facts.builds.find(
    (b, i) =>
      (compute.build === "localBuild") === (candidates[i]?.source === "localBuild") &&
      b.libraries.every((l) => l.found),
  );
  const bad = inUse?.kernels.find((k) => !k.runs);
  if (!inUse || !bad) return null;
  return `node-llama-cpp loaded ${buildName(inUse).slice(4)}, but ${bad.reason}. Build a CUDA backend with machine code for this GPU: aitbc-native-miner gpu build (offline, needs nvcc and cuBLAS); see docs/gpu-build.md`;
}

export async function explainCpuRuntime(
  gpus: readonly OwnedGpu[],
  snapshot: GpuSnapshot | null,
  compute: ComputeInfo,
): Promise<string> {
  return explainCpuRuntimeFacts(await gatherCpuRuntimeFacts(gpus, snapshot, compute));
}
