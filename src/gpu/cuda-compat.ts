// Can a CUDA library's kernels run on this GPU with this driver? Machine code (SASS) for a matching
// architecture runs as is; otherwise PTX for an older one is JIT-compiled, if the driver knows its ISA.
import { type ArchVariant, archLabel, type PtxTarget, type SassTarget } from "./fatbin.js";

export interface CudaBinaryInfo {
  sass: number[];
  ptx: PtxTarget[];
  /** SASS with variants (fatbinArchitectures gives it); without it every `sass` entry is plain. */
  sassTargets?: SassTarget[];
  /** Major of the CUDA runtime it links (13 for libcudart.so.13): the driver must support it. */
  runtimeMajor?: number | null;
  /** For the sentence: "libggml-cuda.so". */
  library?: string;
}

export interface CudaGpuInfo {
  /** "9.0" */
  computeCapability: string;
  /** The newest CUDA version the driver supports, "13.0"; null when unknown. */
  driverCudaVersion: string | null;
  /** For the sentence: "NVIDIA H200". */
  name?: string;
}

export interface CudaBinaryVerdict {
  runs: boolean;
  via: "sass" | "ptx-jit" | null;
  /** One sentence for an operator. */
  reason: string;
  /** False when the verdict rests on a guess (driver version unknown). */
  certain: boolean;
}

/**
 * PTX ISA version → the first CUDA release (so the oldest driver) that can JIT it. From NVIDIA's
 * PTX ISA release history (docs.nvidia.com/cuda/parallel-thread-execution, "Release Notes"), as
 * encoded in cuda-python's get_minimal_required_cuda_ver_from_ptx_ver. Note 8.6 is CUDA 12.7.
 */
const PTX_ISA_TO_CUDA: Readonly<Record<string, string>> = {
  "7.0": "11.0",
  "7.1": "11.1",
  "7.2": "11.2",
  "7.3": "11.3",
  "7.4": "11.4",
  "7.5": "11.5",
  "7.6": "11.6",
  "7.7": "11.7",
  "7.8": "11.8",
  "8.0": "12.0",
  "8.1": "12.1",
  "8.2": "12.2",
  "8.3": "12.3",
  "8.4": "12.4",
  "8.5": "12.5",
  "8.6": "12.7",
  "8.7": "12.8",
  "8.8": "12.9",
  "9.0": "13.0",
  "9.1": "13.1",
};

/**
 * The CUDA version a driver needs to JIT this PTX ISA. Past the table, 9.x is assumed to follow
 * its pattern so far (9.y ↔ 13.y); exact says whether it came from the table.
 */
export function cudaVersionForPtxIsa(isa: string): { cuda: string; exact: boolean } | null {
  const known = PTX_ISA_TO_CUDA[isa];
  if (known) return { cuda: known, exact: true };
  const v = parseVersion(isa);
  if (v && v[0] === 9) return { cuda: `13.${v[1]}`, exact: false };
  return null;
}

/** "13.0" → [13, 0]; null when not two dotted numbers. */
function parseVersion(s: string): [number, number] | null {
  const m = /^(\d+)\.(\d+)/.exec(s.trim());
  return m ? [Number(m[1]), Number(m[2])] : null;
}

function cmp(a: [number, number], b: [number, number]): number {
  return a[0] - b[0] || a[1] - b[1];
}

/** Does code for `arch` (variant) run on a device of compute capability `cc`? */
function sassRuns(arch: number, variant: ArchVariant, cc: [number, number]): boolean {
  const [maj, min] = [Math.floor(arch / 10), arch % 10];
  if (variant === "a") return maj === cc[0] && min === cc[1];
  return maj === cc[0] && min <= cc[1]; // plain and family-specific: same major, not newer minor
}

function ptxFits(arch: number, variant: ArchVariant, cc: [number, number]): boolean {
  const at: [number, number] = [Math.floor(arch / 10), arch % 10];
  if (variant === "a") return cmp(at, cc) === 0;
  if (variant === "f") return at[0] === cc[0] && at[1] <= cc[1];
  return cmp(at, cc) <= 0; // plain PTX is forward compatible across majors
}

function list(items: string[]): string {
  return items.length <= 1 ? (items[0] ?? "") : `${items.slice(0, -1).join(", ")} and ${items.at(-1)}`;
}

/** "machine code for sm_86, sm_89 and PTX 9.1 for sm_75, sm_90". */
function contents(bin: CudaBinaryInfo): string {
  const sass = (bin.sassTargets ?? bin.sass.map((arch) => ({ arch, variant: "" as const }))).map((t) =>
    archLabel(t.arch, t.variant ?? ""),
  );
  const byIsa = new Map<string, string[]>();
  for (const p of bin.ptx) {
    const l = byIsa.get(p.isaVersion) ?? [];
    l.push(archLabel(p.arch, p.variant ?? ""));
    byIsa.set(p.isaVersion, l);
  }
  const ptx = [...byIsa].map(([isa, archs]) => `PTX ${isa} for ${archs.join(", ")}`);
  const parts = [sass.length ? `machine code for ${sass.join(", ")}` : "no machine code", ...ptx];
  return list(parts);
}

/** Whether `bin` holds code `gpu` can run under its driver, and why, in one sentence. */
export function cudaBinaryVerdict(bin: CudaBinaryInfo, gpu: CudaGpuInfo): CudaBinaryVerdict {
  const lib = bin.library ?? "the CUDA library";
  const cc = parseVersion(gpu.computeCapability);
  const device = `${gpu.name ? `this ${gpu.name}` : "this GPU"} (cc ${gpu.computeCapability})`;
  if (!cc) return { runs: false, via: null, certain: false, reason: `${device}: unknown compute capability` };
  const has = `${lib} has ${contents(bin)}`;
  const driver = gpu.driverCudaVersion ? parseVersion(gpu.driverCudaVersion) : null;
  if (driver && bin.runtimeMajor != null && driver[0] < bin.runtimeMajor)
    return {
      runs: false,
      via: null,
      certain: true,
      reason:
        `${lib} is built for the CUDA ${bin.runtimeMajor} runtime, and this driver supports only CUDA ` +
        `${gpu.driverCudaVersion}: nothing can run on ${device} until the driver is updated`,
    };
  const targets = bin.sassTargets ?? bin.sass.map((arch) => ({ arch, variant: "" as ArchVariant }));
  // The closest match is what the runtime picks: sm_89 over sm_86 on an 8.9 card.
  const native = targets
    .filter((t) => sassRuns(t.arch, t.variant ?? "", cc))
    .sort((a, b) => b.arch - a.arch)[0];
  if (native)
    return {
      runs: true,
      via: "sass",
      certain: true,
      reason: `${lib} has machine code for ${archLabel(native.arch, native.variant ?? "")}, which runs on ${device}`,
    };
  const jit = bin.ptx
    .filter((p) => ptxFits(p.arch, p.variant ?? "", cc))
    .map((p) => ({ p, need: cudaVersionForPtxIsa(p.isaVersion) }));
  if (jit.length === 0)
    return {
      runs: false,
      via: null,
      certain: true,
      reason: `${has}; none of it can run on ${device}: build it for sm_${cc[0]}${cc[1]} (aitbc-native-miner gpu build)`,
    };
  if (!driver) {
    const best = jit[0]!;
    return {
      runs: true,
      via: "ptx-jit",
      certain: false,
      reason:
        `${has}; ${device} can only JIT-compile the PTX ${best.p.isaVersion}, which needs a CUDA ` +
        `${best.need?.cuda ?? "(unknown)"} driver, and this driver's CUDA version is unknown`,
    };
  }
  const ok = jit.find((j) => j.need && cmp(parseVersion(j.need.cuda)!, driver) <= 0);
  if (ok)
    return {
      runs: true,
      via: "ptx-jit",
      certain: ok.need!.exact,
      reason:
        `${lib} has no machine code for ${device}; the driver (CUDA ${gpu.driverCudaVersion}) JIT-compiles ` +
        `its PTX ${ok.p.isaVersion} for ${archLabel(ok.p.arch, ok.p.variant ?? "", "sass")} ` +
        `at first load (slow start, cached after)`,
    };
  const oldest = jit
    .filter((j) => j.need)
    .sort((a, b) => cmp(parseVersion(a.need!.cuda)!, parseVersion(b.need!.cuda)!))[0];
  const needs = oldest
    ? `PTX ${oldest.p.isaVersion} needs a CUDA ${oldest.need!.cuda} driver, this one is ${gpu.driverCudaVersion}`
    : `this driver (CUDA ${gpu.driverCudaVersion}) knows none of its PTX versions`;
  return {
    runs: false,
    via: null,
    certain: oldest?.need?.exact ?? true,
    reason: `${has}; ${needs}: no kernel can run on ${device}`,
  };
}
