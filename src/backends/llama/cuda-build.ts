// `gpu build`: compile node-llama-cpp's native backend (CUDA for chosen architectures, or CPU) from
// the llama.cpp source it ships, with cmake directly (no npm, offline, resumable), into the local
// build folder getLlama({ build: "never" }) loads first. The plan is pure; the rest runs it.
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { access, cp, mkdir, readdir, readFile, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { BUILD_DONE_FILE, BUILD_METADATA_FILE, buildFolderName, type LlamaPaths } from "./cuda-binaries.js";

export interface CublasLocation {
  /** libcublas.so.N and libcublasLt.so.N, full paths. */
  lib: string;
  libLt: string;
  /** Headers (cublas_v2.h), when outside the toolkit. */
  include: string | null;
}

export interface CudaToolchain {
  nvcc: string;
  /** The toolkit root (bin/nvcc, include/, lib64 or targets/<triple>/lib). */
  root: string;
  /** "13.0" from nvcc --version. */
  version: string | null;
  /** null: cuBLAS sits in the toolkit, where CMake's FindCUDAToolkit finds it. */
  cublas: CublasLocation | null;
  /** Library folders outside the system's to write into the RUNPATH (cudart, cuBLAS). */
  rpath: string[];
}

export interface BuildPlanInput {
  backend: "cuda" | "cpu";
  /** CUDA architectures as nvcc spells them without prefix: "90", "100", "120a". */
  archs: string[];
  paths: LlamaPaths;
  /** The release getLlama will believe it runs (cuda-binaries effectiveRelease). */
  release: { repo: string; release: string };
  arch: string;
  platformInfo: { name: string; version: string };
  node: { execPath: string; version: string };
  /** CMAKE_JS_INC: node-api-headers' include and node-addon-api's folder. */
  nodeApiInclude: string[];
  cmakeJsVersion: string;
  generator: "Ninja" | "Unix Makefiles";
  jobs: number;
  /** Options getLlama itself reads from the environment (NODE_LLAMA_CPP_CMAKE_OPTION_*, GGML_*). */
  envCmakeOptions: ReadonlyMap<string, string>;
  cuda: CudaToolchain | null;
  /** Build the flash-attention kernels (GGML_CUDA_FA): about half the CUDA compile time. */
  flashAttention: boolean;
  /** Code for any x86-64 CPU (an image built elsewhere), not -march=native. */
  portable: boolean;
}

export interface BuildPlan {
  backend: "cuda" | "cpu";
  folderName: string;
  /** The cmake build tree and the local build folder, as node-llama-cpp lays it out. */
  outDir: string;
  releaseDir: string;
  cudaArchitectures: string | null;
  configureArgs: string[];
  buildArgs: string[];
  /** _nlcBuildMetadata.json: what getLlama checks the local build against. */
  metadata: { buildOptions: Record<string, unknown> };
  /** Equal fingerprints: the same build, so an existing build tree can be resumed. */
  fingerprint: string;
  /** Put first on cmake's PATH: the addon's CMakeLists runs `node`. */
  nodeBinDir: string;
}

const SYSTEM_LIB_DIRS = new Set(["/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/lib/x86_64-linux-gnu"]);
export const PLAN_FILE = "aitbc-gpu-build.json";
export const LOG_FILE = "aitbc-gpu-build.log";

/** "9.0" / "sm_90" / "compute_90a" / "90" → "90" / "90a"; null when not an architecture. */
export function normalizeArch(spec: string): string | null {
  const s = spec.trim().toLowerCase();
  const cc = /^(\d{1,2})\.(\d)$/.exec(s);
  if (cc) return `${Number(cc[1])}${cc[2]}`;
  const m = /^(?:sm_|compute_)?(\d{2,3})([af]?)$/.exec(s);
  if (!m || Number(m[1]) < 50) return null;
  return `${m[1]}${m[2]}`;
}

/** Unique architectures, ascending: "90,100, 9.0" → ["90", "100"]. Throws on a bad entry. */
export function parseArchList(list: string | readonly string[]): string[] {
  const items = (typeof list === "string" ? list.split(",") : list).map((s) => s.trim()).filter(Boolean);
  const out = new Set<string>();
  for (const item of items) {
    const a = normalizeArch(item);
    if (!a) throw new Error(`"${item}" is not a CUDA architecture (expected e.g. 90, 100, 120a or 9.0)`);
    out.add(a);
  }
  return [...out].sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10) || a.localeCompare(b));
}

/** CMAKE_CUDA_ARCHITECTURES: machine code only ("-real"), one entry per architecture. */
export function cudaArchitecturesValue(archs: readonly string[]): string {
  return archs.map((a) => `${a}-real`).join(";");
}

/** The whole build, decided from its inputs: folder, cmake arguments, metadata. */
export function planBuild(i: BuildPlanInput): BuildPlan {
  if (i.backend === "cuda" && !i.cuda) throw new Error("a CUDA build needs a CUDA toolchain");
  if (i.backend === "cuda" && i.archs.length === 0) throw new Error("a CUDA build needs an architecture");
  const gpu = i.backend === "cuda" ? ("cuda" as const) : false;
  const folder = buildFolderName({
    platform: "linux",
    arch: i.arch,
    gpu,
    ...i.release,
    builtinRelease: i.paths.builtinRelease,
    customCmakeOptions: i.envCmakeOptions,
  });
  const outDir = join(i.paths.localBuildsDir, folder.name);
  const releaseDir = join(outDir, "Release");
  const cxxFlags = ["-DBUILDING_NODE_EXTENSION"];
  // What compileLlamaCpp hands cmake-js (and cmake-js to cmake), in that order.
  const d: Array<[string, string]> = [
    ["CMAKE_JS_VERSION", i.cmakeJsVersion],
    ["CMAKE_BUILD_TYPE", "Release"],
    ["CMAKE_LIBRARY_OUTPUT_DIRECTORY", releaseDir],
    ["CMAKE_JS_INC", i.nodeApiInclude.join(";")],
    ["CMAKE_JS_SRC", ""],
    ["NODE_RUNTIME", "node"],
    ["NODE_RUNTIMEVERSION", i.node.version],
    ["NODE_ARCH", i.arch],
    ...[...i.envCmakeOptions],
    ["GGML_BUILD_NUMBER", i.envCmakeOptions.get("GGML_BUILD_NUMBER") ?? "1"],
    ["CMAKE_CONFIGURATION_TYPES", "Release"],
    ["NLC_CURRENT_PLATFORM", `linux-${i.arch}`],
    ["NLC_TARGET_PLATFORM", `linux-${i.arch}`],
    ["NLC_VARIANT", folder.binVariant],
    ["GGML_METAL", "OFF"],
    ["GGML_CCACHE", "OFF"],
    ["LLAMA_CURL", "OFF"],
    ["LLAMA_HTTPLIB", "OFF"],
    ["LLAMA_BUILD_BORINGSSL", "OFF"],
    ["LLAMA_OPENSSL", "OFF"],
  ];
  if (i.portable) d.push(["GGML_NATIVE", "OFF"], ["GGML_CPU_ALL_VARIANTS", "ON"], ["GGML_BACKEND_DL", "ON"]);
  else d.push(["GGML_NATIVE", "ON"]);
  let cudaArchitectures: string | null = null;
  if (i.cuda) {
    const c = i.cuda;
    cudaArchitectures = cudaArchitecturesValue(i.archs);
    d.push(
      ["GGML_CUDA", "1"],
      ["CMAKE_CUDA_COMPILER", c.nvcc],
      ["CUDAToolkit_ROOT", c.root],
      ["CMAKE_CUDA_ARCHITECTURES", cudaArchitectures],
      ["GGML_CUDA_FA", i.flashAttention ? "ON" : "OFF"],
    );
    if (c.cublas) {
      d.push(["CUDA_cublas_LIBRARY", c.cublas.lib], ["CUDA_cublasLt_LIBRARY", c.cublas.libLt]);
      if (c.cublas.include) {
        cxxFlags.push(`-I${c.cublas.include}`);
        d.push(["CMAKE_CUDA_FLAGS", `-I${c.cublas.include}`]);
      }
    }
    const rpath = c.rpath.filter((p) => !SYSTEM_LIB_DIRS.has(p));
    if (rpath.length) d.push(["CMAKE_SHARED_LINKER_FLAGS", rpath.map((p) => `-Wl,-rpath,${p}`).join(" ")]);
  }
  d.push(["CMAKE_CXX_FLAGS", cxxFlags.join(" ")], ["CMAKE_JS_LIB", ""]);
  const configureArgs = [
    "-S",
    i.paths.llamaDir,
    "-B",
    outDir,
    "-G",
    i.generator,
    "--no-warn-unused-cli",
    ...d.map(([k, v]) => `-D${k}=${v}`),
  ];
  const buildArgs = ["--build", outDir, "--config", "Release", "--parallel", String(Math.max(1, i.jobs))];
  const metadata = {
    buildOptions: {
      customCmakeOptions: Object.fromEntries(i.envCmakeOptions),
      progressLogs: true,
      platform: "linux",
      platformInfo: i.platformInfo,
      arch: i.arch,
      gpu,
      llamaCpp: i.release,
    },
  };
  // Jobs and the node binary's path do not change what is built; everything else does.
  const fingerprint = createHash("sha256")
    .update(JSON.stringify([configureArgs.filter((a) => !a.startsWith("-DNODE_RUNTIMEVERSION")), metadata]))
    .digest("hex")
    .slice(0, 16);
  return {
    backend: i.backend,
    folderName: folder.name,
    outDir,
    releaseDir,
    cudaArchitectures,
    configureArgs,
    buildArgs,
    metadata,
    fingerprint,
    nodeBinDir: dirname(i.node.execPath),
  };
}

export type ResumeState = "fresh" | "resume" | "done" | "other";

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

/** What is in the build folder: nothing, this build part-way, this build finished, or another one. */
export async function resumeState(plan: Pick<BuildPlan, "outDir" | "fingerprint">): Promise<ResumeState> {
  if (!(await exists(plan.outDir))) return "fresh";
  let fp: unknown = null;
  try {
    fp = (JSON.parse(await readFile(join(plan.outDir, PLAN_FILE), "utf8")) as { fingerprint?: unknown })
      .fingerprint;
  } catch {
    return (await readdir(plan.outDir)).length === 0 ? "fresh" : "other";
  }
  if (fp !== plan.fingerprint) return "other";
  if (await exists(join(plan.outDir, BUILD_DONE_FILE))) return "done";
  // Generated build files mean configure finished; a configure that failed part-way runs again.
  const gen = await Promise.all(["build.ninja", "Makefile"].map((f) => exists(join(plan.outDir, f))));
  return gen.some(Boolean) ? "resume" : "fresh";
}

/** "[12/476] Building…" (ninja) or "[ 12%] Building…" (make) → progress; null otherwise. */
export function parseProgress(line: string): { done: number; total: number } | null {
  const n = /^\[(\d+)\/(\d+)\]/.exec(line);
  if (n) return { done: Number(n[1]), total: Number(n[2]) };
  const m = /^\[\s*(\d+)%\]/.exec(line);
  return m ? { done: Number(m[1]), total: 100 } : null;
}

export type BuildEvent =
  | { kind: "stage"; stage: "configure" | "compile" | "install"; resumed?: boolean }
  | { kind: "progress"; done: number; total: number }
  | { kind: "line"; line: string };

export interface RunOptions {
  onEvent: (e: BuildEvent) => void;
  /** Rebuild even when this build is already done; always start over on another build's folder. */
  force?: boolean;
  signal?: AbortSignal;
  cmake?: string;
}

export interface BuildResult {
  state: "built" | "already-built";
  outDir: string;
  releaseDir: string;
  resumed: boolean;
  seconds: number;
  /** Files of the Release folder with their sizes. */
  files: Array<{ name: string; bytes: number }>;
}

export class BuildError extends Error {
  override readonly name = "BuildError";
  constructor(
    message: string,
    readonly tail: string[] = [],
  ) {
    super(message);
  }
}

/** Run a command, line by line to `onLine` and the log; rejects with the last lines on failure. */
function runLogged(
  cmd: string,
  args: string[],
  nodeBinDir: string | null,
  log: NodeJS.WritableStream,
  onLine: (l: string) => void,
  signal?: AbortSignal,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const tail: string[] = [];
    log.write(`$ ${cmd} ${args.join(" ")}\n`);
    const env = nodeBinDir
      ? { ...process.env, PATH: `${nodeBinDir}:${process.env["PATH"] ?? ""}` }
      : process.env;
    // Its own process group, so an interruption reaches ninja and the compilers, not cmake alone.
    const child: ChildProcess = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    // SIGINT lets ninja stop cleanly; what it finished stays for the next run.
    const abort = () => {
      try {
        if (child.pid) process.kill(-child.pid, "SIGINT");
      } catch {
        // already gone
      }
    };
    signal?.addEventListener("abort", abort, { once: true });
    let rest = "";
    const feed = (chunk: Buffer) => {
      log.write(chunk);
      const lines = (rest + chunk.toString("utf8")).split(/\r?\n/);
      rest = lines.pop() ?? "";
      for (const l of lines) {
        tail.push(l);
        if (tail.length > 30) tail.shift();
        onLine(l);
      }
    };
    child.stdout?.on("data", feed);
    child.stderr?.on("data", feed);
    child.on("error", (err) => {
      signal?.removeEventListener("abort", abort);
      reject(new BuildError(`${cmd}: ${err.message}`));
    });
    child.on("close", (code, sig) => {
      signal?.removeEventListener("abort", abort);
      if (rest) onLine(rest);
      if (code === 0) resolve();
      else if (signal?.aborted) reject(new BuildError("interrupted: run the same command again to resume"));
      else reject(new BuildError(`${cmd} ${args[0]} failed (${sig ?? `exit ${code}`})`, tail));
    });
  });
}

/** Configure (unless resuming), compile, then lay the result out as a node-llama-cpp local build. */
export async function runBuild(plan: BuildPlan, paths: LlamaPaths, o: RunOptions): Promise<BuildResult> {
  const t0 = performance.now();
  const cmake = o.cmake ?? "cmake";
  const state = await resumeState(plan);
  if (state === "done" && !o.force)
    return { state: "already-built", ...(await summary(plan)), resumed: false, seconds: 0 };
  if (state === "other" || (state === "done" && o.force))
    await rm(plan.outDir, { recursive: true, force: true });
  await mkdir(plan.outDir, { recursive: true });
  // Not loadable until finished: getLlama needs buildDone.status.
  await rm(join(plan.outDir, BUILD_DONE_FILE), { force: true });
  await writeFile(
    join(plan.outDir, PLAN_FILE),
    `${JSON.stringify({ fingerprint: plan.fingerprint, configureArgs: plan.configureArgs }, null, 2)}\n`,
  );
  const log = createWriteStream(join(plan.outDir, LOG_FILE), { flags: "a" });
  const onLine = (line: string) => {
    const p = parseProgress(line);
    o.onEvent(p ? { kind: "progress", ...p } : { kind: "line", line });
  };
  try {
    const resumed = state === "resume";
    if (!resumed) {
      o.onEvent({ kind: "stage", stage: "configure" });
      await runLogged(cmake, plan.configureArgs, plan.nodeBinDir, log, onLine, o.signal);
    }
    o.onEvent({ kind: "stage", stage: "compile", resumed });
    await runLogged(cmake, plan.buildArgs, plan.nodeBinDir, log, onLine, o.signal);
    o.onEvent({ kind: "stage", stage: "install" });
    await install(plan, paths);
    return { state: "built", ...(await summary(plan)), resumed, seconds: (performance.now() - t0) / 1000 };
  } finally {
    await new Promise<void>((r) => log.end(r));
  }
}

/** moveBuildFilesToResultDir + the three files that make getLlama take it. */
async function install(plan: BuildPlan, paths: LlamaPaths): Promise<void> {
  await mkdir(plan.releaseDir, { recursive: true });
  for (const bin of [join(plan.outDir, "bin"), join(plan.outDir, "llama.cpp", "bin")]) {
    if (await exists(bin)) await cp(bin, plan.releaseDir, { recursive: true, force: false });
  }
  await rm(join(plan.releaseDir, "vulkan-shaders-gen"), { force: true });
  if (!(await exists(join(plan.releaseDir, "llama-addon.node"))))
    throw new BuildError(`the build finished without ${join(plan.releaseDir, "llama-addon.node")}`);
  await writeFile(join(plan.releaseDir, BUILD_METADATA_FILE), JSON.stringify(plan.metadata));
  await writeFile(join(plan.outDir, BUILD_DONE_FILE), "");
  await writeFile(
    join(paths.llamaDir, "lastBuild.json"),
    JSON.stringify({ folderName: plan.folderName }, null, 4),
  );
}

async function summary(plan: BuildPlan): Promise<Pick<BuildResult, "outDir" | "releaseDir" | "files">> {
  const names = (await readdir(plan.releaseDir).catch(() => [] as string[])).sort();
  const files = await Promise.all(
    names.map(async (name) => ({ name, bytes: (await stat(join(plan.releaseDir, name))).size })),
  );
  return { outDir: plan.outDir, releaseDir: plan.releaseDir, files };
}

/**
 * Make sure llama/llama.cpp holds the source: as it is, a link to `source` (an extracted tree),
 * or a clone of the git bundle node-llama-cpp ships plus its patches (what `source download` does,
 * with no network). The clone goes to a side folder first, so a stopped one is never taken as done.
 */
export async function ensureSource(
  paths: LlamaPaths,
  o: { source?: string; git?: string; onLine?: (l: string) => void },
): Promise<"present" | "linked" | "cloned"> {
  if (await exists(join(paths.sourceDir, "CMakeLists.txt"))) return "present";
  if (o.source) {
    if (!(await exists(join(o.source, "ggml", "CMakeLists.txt"))))
      throw new BuildError(`${o.source} is not a llama.cpp source tree (no ggml/CMakeLists.txt)`);
    await rm(paths.sourceDir, { recursive: true, force: true });
    await symlink(resolve(o.source), paths.sourceDir, "dir");
    return "linked";
  }
  if (!(await exists(paths.bundle)))
    throw new BuildError(
      `no llama.cpp source: neither ${paths.sourceDir} nor ${paths.bundle}; pass --source DIR`,
    );
  const git = o.git ?? "git";
  const partial = `${paths.sourceDir}.partial`;
  const noLog = { write: () => true } as unknown as NodeJS.WritableStream;
  const say = o.onLine ?? (() => {});
  await rm(partial, { recursive: true, force: true });
  try {
    await runLogged(git, ["clone", "--quiet", paths.bundle, partial], null, noLog, say);
  } catch (err) {
    const msg = (err as Error).message;
    throw new BuildError(
      /ENOENT/.test(msg)
        ? `git is needed to unpack ${paths.bundle}; install git, or pass --source DIR (an extracted llama.cpp tree)`
        : msg,
      err instanceof BuildError ? err.tail : [],
    );
  }
  await runLogged(git, ["-C", partial, "remote", "remove", "origin"], null, noLog, say);
  const patchDir = join(paths.llamaDir, "patches");
  for (const f of (await readdir(patchDir).catch(() => [] as string[])).filter((n) => n.endsWith(".diff"))) {
    const patch = join(patchDir, f);
    // Already in the source (a newer release): `apply --reverse --check` succeeds; skip it.
    const applied = await runLogged(
      git,
      ["-C", partial, "apply", "--reverse", "--check", patch],
      null,
      noLog,
      () => {},
    )
      .then(() => true)
      .catch(() => false);
    if (!applied)
      await runLogged(git, ["-C", partial, "apply", "--ignore-whitespace", patch], null, noLog, say);
  }
  await rename(partial, paths.sourceDir);
  await writeFile(
    join(paths.llamaDir, "llama.cpp.info.json"),
    JSON.stringify({ tag: paths.builtinRelease, llamaCppGithubRepo: paths.builtinRepo }, null, 4),
  );
  return "cloned";
}
