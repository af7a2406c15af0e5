// Where node-llama-cpp 3.21.1 looks for its CUDA backend, in its order (read from its
// dist/bindings/getLlama.js and utils/compileLLamaCpp.js), so `doctor`, `run` and `gpu build`
// agree with what getLlama({ build: "never", gpu: "auto" }) will actually load.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { access, readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

export interface CudaBackendCandidate {
  /** localBuild: `gpu build` or `source build`; prebuilt: @node-llama-cpp/linux-x64-cuda (CUDA 13);
   *  prebuilt-cuda12: its fallback in @node-llama-cpp/linux-x64-cuda-ext, loaded when the first fails to load. */
  source: "localBuild" | "prebuilt" | "prebuilt-cuda12";
  dir: string;
  library: string;
}

export interface LlamaPaths {
  /** node_modules/node-llama-cpp */
  packageDir: string;
  version: string;
  /** …/llama: CMakeLists.txt of the addon, gitRelease.bundle, localBuilds/, lastBuild.json */
  llamaDir: string;
  localBuildsDir: string;
  /** …/llama/llama.cpp, where `source download` clones the bundle */
  sourceDir: string;
  bundle: string;
  /** The llama.cpp release the package ships ("v0.4.0" for 3.21.1). */
  builtinRelease: string;
  builtinRepo: string;
}

export interface BuildFolderInput {
  platform: string;
  arch: string;
  gpu: "cuda" | "vulkan" | false;
  /** The release node-llama-cpp will think it runs: the cloned one's tag, else the builtin. */
  release: string;
  repo: string;
  /** binariesGithubRelease.json's release: a different one adds "release-…" to the name. */
  builtinRelease: string;
  customCmakeOptions: ReadonlyMap<string, string>;
}

export interface BuildFolderName {
  /** localBuilds/<name>: what getLlama looks for (a hash is appended when custom cmake options are set). */
  name: string;
  nameWithoutOptions: string;
  /** NLC_VARIANT: the suffix of libllama.<variant>.so. */
  binVariant: string;
}

const BUILTIN_REPO = "ggml-org/llama.cpp";
const RELEASE_FOLDER = "Release";
export const BUILD_METADATA_FILE = "_nlcBuildMetadata.json";
export const BUILD_DONE_FILE = "buildDone.status";

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

async function readJson(p: string): Promise<unknown> {
  return JSON.parse(await readFile(p, "utf8")) as unknown;
}

function field(obj: unknown, key: string): string | undefined {
  const v = obj && typeof obj === "object" ? (obj as Record<string, unknown>)[key] : undefined;
  return typeof v === "string" ? v : undefined;
}

/** A package's root folder, resolved the way node would import it from `from`. */
function packageRoot(name: string, from: string): string | null {
  let main: string;
  try {
    // The packages are ESM with a "node" export condition, which require.resolve honours.
    main = createRequire(join(from, "package.json")).resolve(name);
  } catch {
    return null;
  }
  for (let dir = dirname(main); dir !== dirname(dir); dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as unknown;
      if (field(pkg, "name") === name) return dir;
    } catch {
      // no package.json at this level
    }
  }
  return null;
}

/** node-llama-cpp's folders as installed beside this package (or under `packageDir`). */
export async function llamaPaths(packageDir?: string): Promise<LlamaPaths> {
  const dir = packageDir ?? packageRoot("node-llama-cpp", join(import.meta.dirname, "..", "..", ".."));
  if (!dir) throw new Error("node-llama-cpp is not installed");
  const llamaDir = join(dir, "llama");
  const pkg = await readJson(join(dir, "package.json"));
  const release = await readJson(join(llamaDir, "binariesGithubRelease.json")).catch(() => null);
  return {
    packageDir: dir,
    version: field(pkg, "version") ?? "unknown",
    llamaDir,
    localBuildsDir: join(llamaDir, "localBuilds"),
    sourceDir: join(llamaDir, "llama.cpp"),
    bundle: join(llamaDir, "gitRelease.bundle"),
    builtinRelease: field(release, "release") ?? "latest",
    builtinRepo: BUILTIN_REPO,
  };
}

/** The release getLlama uses in folder names: the cloned source's (with .git), else the builtin. */
export async function effectiveRelease(p: LlamaPaths): Promise<{ repo: string; release: string }> {
  const info = join(p.llamaDir, "llama.cpp.info.json");
  if ((await exists(join(p.sourceDir, ".git"))) && (await exists(info))) {
    const j = await readJson(info).catch(() => null);
    const tag = field(j, "tag");
    if (tag) return { repo: field(j, "llamaCppGithubRepo") ?? BUILTIN_REPO, release: tag };
  }
  return { repo: p.builtinRepo, release: p.builtinRelease };
}

/** resolveCustomCmakeOptions: the env variables getLlama turns into cmake options (and folder names). */
export function customCmakeOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): Map<string, string> {
  const out = new Map<string, string>();
  for (const k of ["GGML_METAL", "GGML_METAL_EMBED_LIBRARY", "GGML_CUDA", "GGML_VULKAN", "GGML_OPENBLAS"])
    if (env[k] === "1") out.set(k, "1");
  for (const k of [
    "GGML_BLAS_VENDOR",
    "GGML_CUDA_FORCE_DMMV",
    "GGML_CUDA_DMMV_X",
    "GGML_CUDA_MMV_Y",
    "GGML_CUDA_F16",
    "GGML_CUDA_KQUANTS_ITER",
    "GGML_CUDA_PEER_MAX_BATCH_SIZE",
  ]) {
    const v = env[k];
    if (v != null) out.set(k, v);
  }
  if (env["GGML_HIPBLAS"] === "1") out.set("GGML_HIPBLAS", "1");
  const prefix = "NODE_LLAMA_CPP_CMAKE_OPTION_";
  for (const [k, v] of Object.entries(env))
    if (k.startsWith(prefix) && k !== prefix && v != null) out.set(k.slice(prefix.length), v);
  out.delete("");
  return out;
}

const SAFE = /^[A-Za-z0-9._-]*$/;

function safe(s: string): string {
  let out = "";
  for (const ch of s) out += SAFE.test(ch) ? ch : `_${ch.codePointAt(0)!.toString(32)}_`;
  return out;
}

/** node-llama-cpp's hashString: SHA-1, each byte in base 36, joined. */
function hash(text: string): string {
  return [...createHash("sha1").update(text).digest()].map((b) => b.toString(36)).join("");
}

/** getFolderNamePartForRelease: "<owner> <name> <release>" or its hash when it needs quoting. */
function releasePart(repo: string, release: string): string {
  const parts: string[] = [];
  let quoted = false;
  if (repo !== BUILTIN_REPO) {
    const [owner = "", name = ""] = repo.split("/");
    quoted ||= !SAFE.test(owner) || !SAFE.test(name);
    parts.push(SAFE.test(owner) && SAFE.test(name) ? `${owner} ${name}` : `${enc(owner)} ${enc(name)}`);
  }
  quoted ||= !SAFE.test(release);
  parts.push(SAFE.test(release) ? release : enc(release));
  const s = parts.join(" ");
  return quoted ? hash(s) : s;
}

function enc(s: string): string {
  return encodeURIComponent(s);
}

/** getBuildFolderNameForBuildOptions (node-llama-cpp 3.21.1). */
export function buildFolderName(o: BuildFolderInput): BuildFolderName {
  const name = [o.platform, o.arch];
  const bin: string[] = [];
  if (o.gpu !== false) {
    name.push(safe(o.gpu));
    bin.push(safe(o.gpu.toLowerCase()));
  }
  if (o.repo !== BUILTIN_REPO || o.release !== o.builtinRelease) {
    const part = releasePart(o.repo, o.release);
    name.push(`release-${part}`);
    bin.push(part.replaceAll(" ", "_"));
  } else if (o.release !== "latest") bin.push(o.release);
  const base = name.join("-");
  const opts = [...o.customCmakeOptions.keys()]
    .filter((k) => k !== "")
    .sort()
    .map((k) => `${enc(k)}=${enc(o.customCmakeOptions.get(k)!)}`);
  if (opts.length === 0) return { name: base, nameWithoutOptions: base, binVariant: bin.join(".") };
  const h = hash(opts.join(";"));
  return { name: `${base}-${h}`, nameWithoutOptions: base, binVariant: [...bin, h.slice(0, 8)].join(".") };
}

/** getLocalBuildBinaryPath: a local build counts only once all three files are there. */
export async function isCompleteLocalBuild(folder: string): Promise<boolean> {
  const rel = join(folder, RELEASE_FOLDER);
  const checks = await Promise.all([
    exists(join(rel, "llama-addon.node")),
    exists(join(rel, BUILD_METADATA_FILE)),
    exists(join(folder, BUILD_DONE_FILE)),
  ]);
  return checks.every(Boolean);
}

/** A prebuilt package's bins dir, if installed and of node-llama-cpp's own version (else it is ignored). */
async function prebuiltBins(name: string, p: LlamaPaths): Promise<string | null> {
  const root = packageRoot(name, p.packageDir);
  if (!root) return null;
  const pkg = await readJson(join(root, "package.json")).catch(() => null);
  return field(pkg, "version") === p.version ? join(root, "bins") : null;
}

export interface CandidateOptions {
  packageDir?: string;
  env?: NodeJS.ProcessEnv;
  platform?: NodeJS.Platform;
  arch?: string;
}

/**
 * The libggml-cuda.so files getLlama({ gpu: "auto", build: "never" }) would load, best first: the
 * local build; else the prebuilt (its bins/<folder>, or node-llama-cpp/bins/<folder> first when
 * present), and that prebuilt's CUDA 12 fallback, tried only when the first fails to load. Only
 * files that exist are listed. Only Linux has them.
 */
export async function cudaBackendCandidates(opts: CandidateOptions = {}): Promise<CudaBackendCandidate[]> {
  const platform = opts.platform ?? process.platform;
  const arch = opts.arch ?? process.arch;
  if (platform !== "linux") return [];
  const p = await llamaPaths(opts.packageDir);
  const rel = await effectiveRelease(p);
  const folder = buildFolderName({
    platform: "linux",
    arch,
    gpu: "cuda",
    ...rel,
    builtinRelease: p.builtinRelease,
    customCmakeOptions: customCmakeOptionsFromEnv(opts.env ?? process.env),
  });
  const out: CudaBackendCandidate[] = [];
  const add = async (source: CudaBackendCandidate["source"], dir: string) => {
    const library = join(dir, "libggml-cuda.so");
    if (await exists(library)) out.push({ source, dir, library });
  };
  const local = join(p.localBuildsDir, folder.name);
  if (await isCompleteLocalBuild(local)) await add("localBuild", join(local, RELEASE_FOLDER));
  if (arch !== "x64") return out;
  // Prebuilts are looked up by the folder name without custom options.
  const legacy = join(p.packageDir, "bins", folder.nameWithoutOptions);
  const bins = await prebuiltBins("@node-llama-cpp/linux-x64-cuda", p);
  const ext = await prebuiltBins("@node-llama-cpp/linux-x64-cuda-ext", p);
  let main: string | null = null;
  if ((await exists(join(legacy, "llama-addon.node"))) && (await exists(join(legacy, BUILD_METADATA_FILE))))
    main = legacy;
  else if (bins) {
    const d = join(bins, folder.nameWithoutOptions);
    if ((await exists(join(d, "llama-addon.node"))) && (await exists(join(d, BUILD_METADATA_FILE)))) main = d;
  }
  if (!main) return out;
  await add("prebuilt", main);
  // Llama's constructor loads <ext bins>/<folder>/fallback (ext package installed) or <addon dir>/fallback.
  const extDir = main !== legacy && ext ? join(ext, folder.nameWithoutOptions) : main;
  await add("prebuilt-cuda12", join(extDir, "fallback"));
  return out;
}

/** /etc/os-release NAME and VERSION_ID, as node-llama-cpp records them. */
export async function platformInfo(): Promise<{ name: string; version: string }> {
  for (const p of ["/etc/os-release", "/usr/lib/os-release"]) {
    const text = await readFile(p, "utf8").catch(() => null);
    if (text === null) continue;
    const kv = new Map<string, string>();
    for (const line of text.split("\n")) {
      const i = line.indexOf("=");
      if (i < 1) continue;
      let v = line.slice(i + 1);
      if (v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
      kv.set(line.slice(0, i).toLowerCase(), v);
    }
    return { name: kv.get("name") ?? "", version: kv.get("version_id") ?? kv.get("version") ?? "" };
  }
  return { name: "", version: "" };
}

/** node-api headers (node-api-headers, else this node's own include/node) and node-addon-api. */
export async function nodeApiIncludes(packageDir: string): Promise<{ include: string[]; cmakeJs: string }> {
  const req = createRequire(join(packageDir, "package.json"));
  const dirOf = (name: string) => {
    try {
      return dirname(req.resolve(`${name}/package.json`));
    } catch {
      return null;
    }
  };
  const headers = dirOf("node-api-headers");
  const own = join(dirname(dirname(process.execPath)), "include", "node");
  const api = headers ? join(headers, "include") : (await exists(join(own, "node_api.h"))) ? own : null;
  const addon = dirOf("node-addon-api");
  if (!api || !addon)
    throw new Error(
      `missing ${!api ? "node-api-headers (or node's include/node)" : "node-addon-api"} beside node-llama-cpp`,
    );
  const cm = dirOf("cmake-js");
  const cmakeJs = cm
    ? (JSON.parse(await readFile(join(cm, "package.json"), "utf8")) as { version: string }).version
    : "8.0.0";
  return { include: [api, addon], cmakeJs };
}
