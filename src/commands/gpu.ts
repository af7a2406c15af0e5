// `gpu`: GPU maintenance. `gpu build` compiles node-llama-cpp's CUDA (or CPU) backend for this
// host from the llama.cpp source it ships, offline, into the local build folder `run` loads first.
// The host facts (GPU archs, nvcc, cuBLAS, cmake) are gathered here; the plan and build live in
// backends/llama/cuda-build.ts.
import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { access, readdir, realpath } from "node:fs/promises";
import { availableParallelism, homedir } from "node:os";
import { basename, dirname, join } from "node:path";
import { promisify } from "node:util";
import type { Command } from "commander";
import { InvalidArgumentError, Option } from "commander";
import {
  type BuildEvent,
  type BuildPlan,
  type CudaToolchain,
  normalizeArch,
} from "../backends/llama/cuda-build.js";
import { registerDrain } from "./gpu-drain.js";

const run = promisify(execFile);

interface BuildOptions {
  arch?: string[];
  backend: "cuda" | "cpu";
  cpu?: boolean;
  cudaRoot?: string;
  source?: string;
  jobs?: number;
  flashAttention: boolean;
  portable?: boolean;
  force?: boolean;
  dryRun?: boolean;
  json?: boolean;
  verbose?: boolean;
  nvmlLibrary?: string;
}

class Refusal extends Error {}

async function isExec(p: string): Promise<boolean> {
  return access(p, constants.X_OK).then(
    () => true,
    () => false,
  );
}

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

async function onPath(name: string): Promise<string | null> {
  for (const d of (process.env["PATH"] ?? "").split(":").filter(Boolean))
    if (await isExec(join(d, name))) return join(d, name);
  return null;
}

/** /usr/local/cuda-13.0, /usr/local/cuda-12.8, …: newest first. */
async function usrLocalCudas(): Promise<string[]> {
  const names = (await readdir("/usr/local").catch(() => [] as string[])).filter((n) => /^cuda-\d/.test(n));
  const v = (n: string) => n.slice(5).split(".").map(Number);
  names.sort((a, b) => v(b)[0]! - v(a)[0]! || (v(b)[1] ?? 0) - (v(a)[1] ?? 0));
  return names.map((n) => `/usr/local/${n}`);
}

/** nvcc and its toolkit root: --cuda-root only when given, else CUDACXX, CUDA_HOME, PATH, /usr/local. */
async function findNvcc(cudaRoot: string | undefined): Promise<{ nvcc: string; root: string } | string[]> {
  const env = process.env;
  const tried: string[] = [];
  const candidates = cudaRoot
    ? [join(cudaRoot, "bin", "nvcc")]
    : [
        env["CUDACXX"],
        env["CUDA_HOME"] && join(env["CUDA_HOME"], "bin", "nvcc"),
        env["CUDA_PATH"] && join(env["CUDA_PATH"], "bin", "nvcc"),
        await onPath("nvcc"),
        "/usr/local/cuda/bin/nvcc",
        ...(await usrLocalCudas()).map((r) => join(r, "bin", "nvcc")),
      ];
  for (const c of candidates) {
    if (!c) continue;
    tried.push(c);
    if (!(await isExec(c))) continue;
    // A wrapper script (/usr/local/bin/nvcc) says where it really lives in a dry run.
    const dry = await run(c, ["--dryrun", "-x", "cu", "-c", "/dev/null", "-o", "/dev/null"]).catch(
      () => null,
    );
    const here = /_HERE_=(\S+)/.exec(`${dry?.stdout ?? ""}${dry?.stderr ?? ""}`)?.[1];
    const root = here ? dirname(here) : dirname(dirname(await realpath(c)));
    return { nvcc: here ? join(here, "nvcc") : c, root };
  }
  return tried;
}

/** The toolkit's library folders (lib64, targets/<triple>/lib). */
async function toolkitLibDirs(root: string): Promise<string[]> {
  const targets = (await readdir(join(root, "targets")).catch(() => [] as string[])).map((t) =>
    join(root, "targets", t, "lib"),
  );
  const out: string[] = [];
  for (const d of [join(root, "lib64"), join(root, "lib"), ...targets]) if (await exists(d)) out.push(d);
  return out;
}

/** Python's `nvidia` package folders (pip's CUDA wheels), by asking python, else the usual places. */
async function pythonNvidiaDirs(): Promise<string[]> {
  const asked = await run("python3", ["-c", "import nvidia; print('\\n'.join(nvidia.__path__))"]).catch(
    () => null,
  );
  const dirs = asked ? asked.stdout.split("\n").filter(Boolean) : [];
  for (const base of ["/usr/local/lib", "/usr/lib", join(homedir(), ".local", "lib")]) {
    for (const py of (await readdir(base).catch(() => [] as string[])).filter((n) => n.startsWith("python3")))
      for (const sp of ["site-packages", "dist-packages"]) dirs.push(join(base, py, sp, "nvidia"));
  }
  dirs.push("/usr/lib/python3/dist-packages/nvidia");
  const out: string[] = [];
  for (const d of new Set(dirs)) if (await exists(d)) out.push(d);
  return out;
}

/** Find libcublas.so.<major> at most three folders below `dir`. */
async function findFile(dir: string, name: string, depth = 3): Promise<string | null> {
  if (await exists(join(dir, name))) return join(dir, name);
  if (depth === 0) return null;
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (!e.isDirectory()) continue;
    const hit = await findFile(join(dir, e.name), name, depth - 1);
    if (hit) return hit;
  }
  return null;
}

/** nvcc, its version, and where cuBLAS is (toolkit, else pip's nvidia wheels); Refusal when missing. */
export async function discoverCuda(
  cudaRoot: string | undefined,
): Promise<CudaToolchain & { archs: string[] | null }> {
  const found = await findNvcc(cudaRoot);
  if (Array.isArray(found))
    throw new Refusal(
      `no CUDA compiler (nvcc): looked at ${found.join(", ") || "nothing"}. Install the CUDA toolkit ` +
        `(13.x for driver 580+), or pass --cuda-root DIR; --cpu builds the CPU backend instead`,
    );
  const out = await run(found.nvcc, ["--version"]).catch(() => null);
  const version = /release (\d+\.\d+)/.exec(out?.stdout ?? "")?.[1] ?? null;
  const list = await run(found.nvcc, ["--list-gpu-arch"]).catch(() => null);
  const archs = [...(list?.stdout ?? "").matchAll(/compute_(\d+)/g)].map((m) => m[1]!);
  const major = version ? version.split(".")[0] : "13";
  const libDirs = await toolkitLibDirs(found.root);
  const rpath = [...libDirs];
  let cublas: CudaToolchain["cublas"] = null;
  let inToolkit = false;
  for (const d of libDirs) if (await exists(join(d, `libcublas.so.${major}`))) inToolkit = true;
  if (!inToolkit) {
    for (const d of await pythonNvidiaDirs()) {
      const lib = await findFile(d, `libcublas.so.${major}`);
      if (!lib) continue;
      const libLt = join(dirname(lib), `libcublasLt.so.${major}`);
      if (!(await exists(libLt))) continue;
      const inc = join(dirname(dirname(lib)), "include");
      cublas = { lib, libLt, include: (await exists(join(inc, "cublas_v2.h"))) ? inc : null };
      rpath.push(dirname(lib));
      break;
    }
    if (!cublas)
      throw new Refusal(
        `no cuBLAS ${major} (libcublas.so.${major}) in ${found.root} or in Python's nvidia packages: ` +
          `install the toolkit's cuBLAS (cuda-libraries-dev-${major}-x) or pip install nvidia-cublas, or pass --cuda-root`,
      );
  }
  return { nvcc: found.nvcc, root: found.root, version, cublas, rpath, archs: archs.length ? archs : null };
}

/** Compute capabilities NVML (or nvidia-smi) reports, as architectures. */
async function hostArchs(
  nvmlLibrary: string | undefined,
): Promise<{ archs: string[]; gpus: Array<{ name: string; cc: string; driverCuda: string | null }> }> {
  const [{ createGpuInfoSource }, { silentLogger }, { parseArchList }] = await Promise.all([
    import("../gpu/index.js"),
    import("../log.js"),
    import("../backends/llama/cuda-build.js"),
  ]);
  const src = await createGpuInfoSource({ nvmlLibrary, log: silentLogger() });
  try {
    const s = await src.snapshot();
    const gpus = s.devices
      .filter((d) => d.computeCapability)
      .map((d) => ({ name: d.name, cc: d.computeCapability!, driverCuda: s.cudaDriverVersion }));
    return { archs: parseArchList(gpus.map((g) => g.cc)), gpus };
  } finally {
    await src.close();
  }
}

function elapsed(sec: number): string {
  const m = Math.floor(sec / 60);
  return m > 0 ? `${m}m${String(Math.round(sec % 60)).padStart(2, "0")}s` : `${sec.toFixed(0)}s`;
}

/** Progress on stderr: a line per stage, per 5% of the compile or 20 s, every error line. */
function progressPrinter(verbose: boolean): (e: BuildEvent) => void {
  const t0 = performance.now();
  let lastPct = -5;
  let lastAt = 0;
  const say = (s: string) => process.stderr.write(`gpu build: ${s}\n`);
  return (e) => {
    const t = (performance.now() - t0) / 1000;
    if (e.kind === "stage")
      say(e.stage === "compile" && e.resumed ? "compile (resuming the build folder)" : e.stage);
    else if (e.kind === "progress") {
      const pct = Math.floor((100 * e.done) / Math.max(1, e.total));
      if (pct - lastPct >= 5 || t - lastAt >= 20 || e.done === e.total) {
        say(`[${e.done}/${e.total}] ${pct}% ${elapsed(t)}`);
        lastPct = pct;
        lastAt = t;
      }
    } else if (verbose || /\berror\b|FAILED|CMake Error|fatal/i.test(e.line))
      process.stderr.write(`${e.line}\n`);
  };
}

function describePlan(plan: BuildPlan, extra: Record<string, unknown>): string {
  const rows = [
    `backend       ${plan.backend}${plan.cudaArchitectures ? ` (CUDA architectures ${plan.cudaArchitectures})` : ""}`,
    `build folder  ${plan.outDir}`,
    `result        ${plan.releaseDir} (loaded by getLlama({ build: "never" }) as its local build)`,
    ...Object.entries(extra).map(
      ([k, v]) => `${k.padEnd(13)} ${typeof v === "string" ? v : JSON.stringify(v)}`,
    ),
    `configure     cmake ${plan.configureArgs.join(" ")}`,
    `compile       cmake ${plan.buildArgs.join(" ")}`,
  ];
  return `${rows.join("\n")}\n`;
}

async function build(opts: BuildOptions): Promise<number> {
  const [cb, bins] = await Promise.all([
    import("../backends/llama/cuda-build.js"),
    import("../backends/llama/cuda-binaries.js"),
  ]);
  const backend = opts.cpu ? "cpu" : opts.backend;
  const paths = await bins.llamaPaths();
  const release = await bins.effectiveRelease(paths);
  const envCmakeOptions = bins.customCmakeOptionsFromEnv();
  const facts: Record<string, unknown> = { nodeLlamaCpp: `${paths.version} (llama.cpp ${release.release})` };
  let archs: string[] = [];
  let cuda: CudaToolchain | null = null;
  let hostGpus: Awaited<ReturnType<typeof hostArchs>>["gpus"] = [];
  if (backend === "cuda") {
    if (opts.arch?.length) archs = cb.parseArchList(opts.arch);
    else {
      const host = await hostArchs(opts.nvmlLibrary);
      if (host.archs.length === 0)
        throw new Refusal(
          "no GPU visible to NVML or nvidia-smi: pass the architectures with --arch (e.g. --arch 90,100)",
        );
      archs = host.archs;
      hostGpus = host.gpus;
      facts["gpus"] = host.gpus.map((g) => `${g.name} (cc ${g.cc})`).join(", ");
    }
    const tc = await discoverCuda(opts.cudaRoot);
    cuda = tc;
    const known = tc.archs;
    const unknown = known ? archs.filter((a) => !known.includes(a.replace(/[af]$/, ""))) : [];
    if (unknown.length)
      throw new Refusal(
        `nvcc ${tc.version ?? ""} cannot compile for ${unknown.map((a) => `sm_${a}`).join(", ")} ` +
          `(it knows ${known!.join(", ")}); CUDA 13 starts at sm_75, sm_100+ needs CUDA 12.8+`,
      );
    facts["nvcc"] = `${tc.nvcc} (CUDA ${tc.version ?? "?"})`;
    facts["cuBLAS"] = tc.cublas ? tc.cublas.lib : `in ${tc.root}`;
  }
  const ninja = await onPath("ninja");
  if (!opts.dryRun && !(await onPath("cmake")))
    throw new Refusal("cmake is not on PATH: install CMake 3.19+");
  if (!opts.dryRun && !ninja && !(await onPath("make")))
    throw new Refusal("neither ninja nor make is on PATH");
  const api = await bins.nodeApiIncludes(paths.packageDir).catch((e: Error) => {
    throw new Refusal(e.message);
  });
  const plan = cb.planBuild({
    backend,
    archs,
    paths,
    release,
    arch: process.arch,
    platformInfo: await bins.platformInfo(),
    node: { execPath: process.execPath, version: process.versions.node },
    nodeApiInclude: api.include,
    cmakeJsVersion: api.cmakeJs,
    generator: ninja ? "Ninja" : "Unix Makefiles",
    jobs: opts.jobs ?? availableParallelism(),
    envCmakeOptions,
    cuda,
    flashAttention: opts.flashAttention,
    portable: opts.portable ?? false,
  });
  const state = await cb.resumeState(plan);
  facts["state"] = {
    fresh: "new",
    resume: "resumes",
    done: "already built",
    other: "another build: replaced",
  }[state];
  if (envCmakeOptions.size > 0)
    process.stderr.write(
      `gpu build: warning: cmake options from the environment (${[...envCmakeOptions.keys()].join(", ")}) ` +
        `name the folder ${plan.folderName}; run must see the same variables to find it\n`,
    );
  if (opts.dryRun) {
    process.stdout.write(
      opts.json ? `${JSON.stringify({ plan, ...facts }, null, 2)}\n` : describePlan(plan, facts),
    );
    return 0;
  }
  if (!opts.json) process.stderr.write(describePlan(plan, facts));
  const printer = progressPrinter(opts.verbose ?? false);
  const how = await cb.ensureSource(paths, {
    ...(opts.source ? { source: opts.source } : {}),
    onLine: (l) => printer({ kind: "line", line: l }),
  });
  if (how !== "present") process.stderr.write(`gpu build: llama.cpp source ${how} at ${paths.sourceDir}\n`);
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const result = await cb.runBuild(plan, paths, {
      onEvent: printer,
      force: opts.force ?? false,
      signal: stop.signal,
    });
    const report: Record<string, unknown> = { ...result, folderName: plan.folderName };
    const lib = join(result.releaseDir, "libggml-cuda.so");
    if (backend === "cuda" && (await exists(lib))) {
      const [{ fatbinArchitectures }, { cudaBinaryVerdict }] = await Promise.all([
        import("../gpu/fatbin.js"),
        import("../gpu/cuda-compat.js"),
      ]);
      const fb = await fatbinArchitectures(lib);
      report["sass"] = fb?.sass ?? [];
      // The same check doctor and run make, on the GPUs this build was made for.
      report["verdicts"] = fb
        ? hostGpus.map((g) =>
            cudaBinaryVerdict(
              { ...fb, library: "libggml-cuda.so" },
              { computeCapability: g.cc, driverCudaVersion: g.driverCuda, name: g.name },
            ),
          )
        : [];
    }
    if (opts.json) process.stdout.write(`${JSON.stringify(report)}\n`);
    else {
      const what =
        result.state === "already-built"
          ? "already built (--force rebuilds)"
          : `built in ${elapsed(result.seconds)}`;
      process.stdout.write(
        `${basename(plan.outDir)}: ${what}\n  ${result.releaseDir}\n` +
          (report["sass"]
            ? `  machine code for ${(report["sass"] as number[]).map((a) => `sm_${a}`).join(", ")}\n`
            : "") +
          ((report["verdicts"] as Array<{ reason: string }> | undefined) ?? [])
            .map((v) => `  ${v.reason}\n`)
            .join("") +
          `  run loads it with no environment variable (node-llama-cpp's local build comes before any prebuilt)\n`,
      );
    }
    return 0;
  } catch (err) {
    if (stop.signal.aborted) {
      process.stderr.write(
        `gpu build: interrupted; run the same command again to resume from ${plan.outDir}\n`,
      );
      return 130;
    }
    const tail = (err as { tail?: string[] }).tail ?? [];
    process.stderr.write(
      `${tail.join("\n")}\ngpu build: ${(err as Error).message}\n  full log: ${join(plan.outDir, cb.LOG_FILE)}\n`,
    );
    return 1;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 1024) throw new InvalidArgumentError("an integer from 1 to 1024");
  return n;
}

function archList(v: string, prev: string[] | undefined): string[] {
  const items = v.split(",").map((s) => s.trim());
  const bad = items.find((a) => normalizeArch(a) === null);
  if (bad !== undefined)
    throw new InvalidArgumentError(`"${bad}" is not a CUDA architecture (e.g. 90, 100, 120a, 9.0)`);
  return [...(prev ?? []), ...items];
}

export function register(program: Command): void {
  const gpu = program
    .command("gpu")
    .description("GPU maintenance: build the CUDA backend; drain or undrain a card of a running host");
  registerDrain(gpu);
  gpu
    .command("build")
    .description(
      "build node-llama-cpp's CUDA backend for this host's GPU architectures (or --arch) from the llama.cpp " +
        "source it ships, offline and resumable, where `run` finds it",
    )
    .option(
      "--arch <list>",
      "CUDA architectures, e.g. 90 or 90,100,120 (default: the GPUs NVML reports)",
      archList,
    )
    .addOption(new Option("--backend <kind>", "what to build").choices(["cuda", "cpu"]).default("cuda"))
    .option("--cpu", "build the CPU backend (same as --backend cpu)")
    .option(
      "--cuda-root <dir>",
      "CUDA toolkit root with bin/nvcc (default: CUDACXX, CUDA_HOME, PATH, /usr/local/cuda*)",
    )
    .option(
      "--source <dir>",
      "an extracted llama.cpp tree to build (default: the git bundle node-llama-cpp ships)",
    )
    .option("--jobs <n>", "parallel compile jobs (default: all cores)", positiveInt)
    .option("--no-flash-attention", "skip the flash-attention CUDA kernels (about half the compile time)")
    .option("--portable", "code for any x86-64 CPU, not this one's (images built on another machine)")
    .option("--force", "rebuild even when this build is already done")
    .option("--dry-run", "print the plan (folder, cmake arguments) and stop")
    .option("--json", "print the plan or the result as JSON on stdout")
    .option("--verbose", "print every compiler line")
    .option("--nvml-library <path>", "path of libnvidia-ml.so.1 (to read the GPUs' architectures)")
    .action(async (opts: BuildOptions) => {
      try {
        process.exitCode = await build(opts);
      } catch (err) {
        if (!(err instanceof Refusal) && !(err instanceof Error && err.name === "BuildError")) throw err;
        process.stderr.write(`gpu build: ${err.message}\n`);
        process.exitCode = 1;
      }
    });
}
