#!/usr/bin/env node
// Inference acceptance worker (docs/gpu-acceptance.md, "Inference on the GPU"), started by
// scripts/gpu-inference-acceptance.sh from the unpacked device bundle: builds the backend with
// `gpu build`, generates the models with scripts/make-model.mjs (beside the build), then measures
// (demo, doctor and telemetry, single-stream, aggregate through the miner vs raw) in child
// processes with their own time limits, and rewrites ONE report after every step, so the report
// exists whatever happens. The figures and their targets: bench/inference-report.mjs.
//   node scripts/gpu-inference-acceptance.mjs --out REPORT.json --work DIR [--cpu]
//        [--steps SHELL_STEPS.jsonl] [--deadline EPOCH_MS] [--started EPOCH_MS]
// Env: AITBC_ACCEPT_ARCH (90), AITBC_ACCEPT_FA=1 (build the flash-attention kernels),
//      AITBC_ACCEPT_BUILD_TIMEOUT (s), AITBC_ACCEPT_LEVELS (e.g. 1,16,4,64), AITBC_ACCEPT_TOKENS.
// Exit 0 when every step ran to its end (whatever the figures), 1 otherwise.
import { execFileSync, spawn } from "node:child_process";
import {
  createReadStream,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { availableParallelism, cpus, freemem, release, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { buildReport, modelName, runPlan } from "../bench/inference-report.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values: args } = parseArgs({
  options: {
    out: { type: "string" },
    work: { type: "string" },
    steps: { type: "string" },
    deadline: { type: "string" },
    started: { type: "string" },
    cpu: { type: "boolean", default: false },
  },
});
if (!args.out || !args.work) {
  process.stderr.write("usage: gpu-inference-acceptance.mjs --out REPORT.json --work DIR [--cpu]\n");
  process.exit(2);
}
const plan = runPlan(args.cpu ? "cpu" : "gpu", process.env);
const startedAt = Number(args.started ?? Date.now());
const deadline = Number(args.deadline ?? Date.now() + 510_000);
const work = resolve(args.work);
const modelsDir = join(work, "models");
const cli = join(root, "bin", "aitbc-native-miner.js");
const phases = join(root, "bench", "inference-phases.mjs");
const threads = availableParallelism();
mkdirSync(modelsDir, { recursive: true });

const run = {
  plan,
  startedAt,
  limitS: Math.round((deadline - startedAt) / 1000),
  command: `bash gpu-inference-acceptance.sh REPORT_DIR${args.cpu ? " --cpu" : ""}`,
  steps: [],
  single: {},
  aggregate: { levels: [] },
  complete: false,
};
const left = () => deadline - Date.now();
/**
 * What every child after the build sees: on a GPU host, LD_LIBRARY_PATH with the toolkit's and
 * cuBLAS's folders (gpu build's own discovery). node-llama-cpp tries CUDA only when it finds
 * libcudart, libcublas and libcublasLt there or in the system's folders (docs/gpu-build.md).
 */
const runtimeEnv = {};
const log = (s) => process.stdout.write(`[${((Date.now() - startedAt) / 1000).toFixed(0)}s] ${s}\n`);

/** The children running now: told to stop when this worker is (SIGTERM at the deadline). */
const children = new Set();
let stopping = false;
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    if (stopping) return; // once is enough: the exit below comes
    stopping = true;
    for (const c of children) c.kill("SIGTERM");
    run.failure = `the worker got ${sig} (the run's deadline); the report holds what was measured until then`;
    try {
      save();
    } catch {}
    // A moment for gpu build to stop ninja (its tree then resumes), then go.
    setTimeout(() => process.exit(1), 3000);
  });
}

/** Rewrite the report (atomically): called after every step. */
function save() {
  run.endedAt = Date.now();
  const doc = buildReport(run);
  const tmp = `${args.out}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(doc, null, 2)}\n`);
  renameSync(tmp, args.out);
  return doc;
}

/**
 * A child with a hard limit: SIGTERM at the limit (gpu build then stops ninja cleanly, so the
 * tree resumes), SIGKILL 15 s later. Never throws. Lines on stderr go to `onLine` as they come.
 */
function sh(file, argv, { timeoutMs, env = {}, onLine, cwd = root } = {}) {
  const t0 = Date.now();
  return new Promise((done) => {
    if (stopping) {
      done({ code: null, stdout: "", stderr: "", why: "not started: the run is stopping", ms: 0 });
      return;
    }
    let child;
    try {
      child = spawn(file, argv, {
        cwd,
        env: { ...process.env, ...runtimeEnv, ...env },
        stdio: ["ignore", "pipe", "pipe"],
      });
    } catch (err) {
      done({ code: null, stdout: "", stderr: String(err), why: String(err), ms: 0 });
      return;
    }
    children.add(child);
    let stdout = "";
    let stderr = "";
    let rest = "";
    let why = null;
    child.stdout.setEncoding("utf8").on("data", (d) => {
      stdout += d;
      if (stdout.length > 8 << 20) stdout = stdout.slice(-(4 << 20));
    });
    child.stderr.setEncoding("utf8").on("data", (d) => {
      stderr += d;
      if (stderr.length > 4 << 20) stderr = stderr.slice(-(2 << 20));
      const lines = (rest + d).split("\n");
      rest = lines.pop() ?? "";
      for (const l of lines) onLine?.(l);
    });
    const limit = Math.max(1000, Math.min(timeoutMs ?? 60_000, left() - 5000));
    const term = setTimeout(() => {
      why = `stopped after ${Math.round(limit / 1000)} s`;
      child.kill("SIGTERM");
    }, limit);
    const kill = setTimeout(() => child.kill("SIGKILL"), limit + 15_000);
    child.on("error", (err) => {
      why ??= err.message;
    });
    child.on("close", (code, signal) => {
      children.delete(child);
      clearTimeout(term);
      clearTimeout(kill);
      done({
        code,
        signal,
        stdout,
        stderr,
        why: why ?? (signal ? `killed by ${signal}` : null),
        ms: Date.now() - t0,
      });
    });
  });
}
const tail = (s, n = 1500) => (s && s.length > n ? `…${s.slice(-n)}` : (s ?? ""));
const resultOf = (r) => {
  const line = r.stdout
    .split("\n")
    .reverse()
    .find((l) => l.startsWith("@@RESULT "));
  try {
    return line ? JSON.parse(line.slice(9)) : null;
  } catch {
    return null;
  }
};

/** Record a step; `skipped` says why it did not run ("not needed" does not count against the run). */
function step(name, fields) {
  const s = { name, ok: false, ms: 0, ...fields };
  run.steps.push(s);
  save();
  log(
    `${name}: ${s.skipped ? `skipped (${s.skipped})` : s.ok ? "ok" : "FAILED"} ${s.ms ? `${(s.ms / 1000).toFixed(1)} s` : ""}${s.details ? ` — ${String(s.details).slice(0, 200)}` : ""}`,
  );
  return s;
}
const skip = (name, why) => step(name, { skipped: why });

// ---- host ---------------------------------------------------------------------------------
async function hostFacts() {
  const first = async (file, argv) => {
    const r = await sh(file, argv, { timeoutMs: 20_000 });
    return r.code === 0 ? `${r.stdout}${r.stderr}`.trim().split("\n") : null;
  };
  const smi = await first("nvidia-smi", [
    "--query-gpu=name,driver_version,memory.total,compute_cap,uuid",
    "--format=csv,noheader,nounits",
  ]);
  const smiPlain = await first("nvidia-smi", []);
  const nvcc = await first("nvcc", ["--version"]);
  const cmake = await first("cmake", ["--version"]);
  const ninja = await first("ninja", ["--version"]);
  const gcc = await first("gcc", ["--version"]);
  let bundle = null;
  for (const f of [join(root, ".bundle-manifest.json")]) {
    try {
      const m = JSON.parse(readFileSync(f, "utf8"));
      bundle = {
        builtAt: m.builtAt,
        node: m.node,
        nodeLlamaCpp: m.nodeLlamaCpp,
        llamaCppRelease: m.llamaCppRelease,
        totalBytes: m.totalBytes,
        files: m.files?.map((x) => ({ name: x.name, bytes: x.bytes })),
      };
    } catch {}
  }
  let nlc = null;
  try {
    nlc = JSON.parse(
      readFileSync(join(root, "node_modules", "node-llama-cpp", "package.json"), "utf8"),
    ).version;
  } catch {}
  run.bundle = bundle;
  let cuda = null;
  if (plan.mode === "gpu") {
    try {
      const { discoverCuda } = await import(join(root, "dist", "commands", "gpu.js"));
      const tc = await discoverCuda(undefined);
      const extra = tc.rpath.filter((d) => !(process.env.LD_LIBRARY_PATH ?? "").split(":").includes(d));
      cuda = {
        nvcc: tc.nvcc,
        root: tc.root,
        version: tc.version,
        cublas: tc.cublas?.lib ?? `in ${tc.root}`,
        libraryPath: extra,
      };
      if (extra.length)
        runtimeEnv.LD_LIBRARY_PATH = [...extra, process.env.LD_LIBRARY_PATH].filter(Boolean).join(":");
    } catch (err) {
      cuda = { error: String(err?.message ?? err) };
    }
  }
  run.host = {
    gpus: (smi ?? []).map((l) => {
      const [name, driver, memMiB, cc, uuid] = l.split(",").map((x) => x.trim());
      return { name, driver, memoryTotalMiB: Number(memMiB), computeCapability: cc, uuid };
    }),
    cudaDriver: /CUDA Version:\s*([0-9.]+)/.exec((smiPlain ?? []).join("\n"))?.[1] ?? null,
    nvcc: nvcc?.find((l) => /release/.test(l))?.trim() ?? null,
    cmake: cmake?.[0] ?? null,
    ninja: ninja?.[0] ?? null,
    gcc: gcc?.[0] ?? null,
    cudaToolchain: cuda,
    node: process.version,
    nodeLlamaCpp: nlc,
    cpu: cpus()[0]?.model ?? null,
    cpuCount: threads,
    memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
    freeMemoryGiB: Number((freemem() / 2 ** 30).toFixed(1)),
    kernel: release(),
    platform: `${process.platform}-${process.arch}`,
  };
}

// ---- build + models ---------------------------------------------------------------------------
/**
 * CMake's FindCUDAToolkit defines CUDA::cuda_driver (which ggml-cuda links) only when it finds an
 * unversioned libcuda.so: in the toolkit's stubs/ or the system's folders. A toolkit assembled
 * from NVIDIA's pip wheels has no stubs/ (this project's CPU host has such a one), and a driver
 * mounted into a container brings libcuda.so.1 alone: configure then stops with "Target ggml-cuda
 * links to: CUDA::cuda_driver but the target was not found". So, when no libcuda.so is found, a
 * folder with libcuda.so → the driver's libcuda.so.1 goes on CMAKE_LIBRARY_PATH for the build
 * (the library's DT_NEEDED is then libcuda.so.1, as with the stub). Nothing else changes: no
 * cmake option, so the build folder keeps the name `run` looks for.
 */
function cudaDriverLink(toolkitRoot) {
  const ls = (d) => {
    try {
      return readdirSync(d);
    } catch {
      return [];
    }
  };
  const roots = toolkitRoot
    ? [toolkitRoot, ...ls(join(toolkitRoot, "targets")).map((t) => join(toolkitRoot, "targets", t))]
    : [];
  const unversioned = [
    ...roots.flatMap((r) => ["lib64", "lib64/stubs", "lib", "lib/stubs"].map((s) => join(r, s))),
    ...(process.env.CMAKE_LIBRARY_PATH ?? "").split(":").filter(Boolean),
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/lib/x86_64-linux-gnu",
    "/usr/local/lib",
  ];
  const found = unversioned.find((d) => existsSync(join(d, "libcuda.so")));
  if (found) return { needed: false, libcuda: join(found, "libcuda.so") };
  // The driver's libcuda.so.1: where the loader finds it (ldconfig's cache), else the usual folders.
  let driver = null;
  try {
    const cache = execFileSync("ldconfig", ["-p"], { encoding: "utf8", timeout: 10_000 });
    driver = /libcuda\.so\.1 \(libc6,x86-64\) => (\S+)/.exec(cache)?.[1] ?? null;
  } catch {}
  driver ??=
    [...(process.env.LD_LIBRARY_PATH ?? "").split(":").filter(Boolean), ...unversioned, "/usr/lib/wsl/lib"]
      .map((d) => join(d, "libcuda.so.1"))
      .find((f) => existsSync(f)) ?? null;
  if (!driver)
    return {
      needed: true,
      libcuda: null,
      note: "no libcuda.so and no driver libcuda.so.1: configure will stop",
    };
  const dir = join(work, "cuda-driver-link");
  mkdirSync(dir, { recursive: true });
  rmSync(join(dir, "libcuda.so"), { force: true });
  symlinkSync(driver, join(dir, "libcuda.so"));
  return { needed: true, libcuda: driver, linkDir: dir };
}

async function build() {
  const stages = {};
  let last = null;
  const t0 = Date.now();
  const env = {};
  if (plan.mode === "gpu") {
    const link = cudaDriverLink(run.host?.cudaToolchain?.root ?? null);
    if (link.linkDir)
      env.CMAKE_LIBRARY_PATH = [link.linkDir, process.env.CMAKE_LIBRARY_PATH].filter(Boolean).join(":");
    run.cudaDriverLink = link;
    log(
      `libcuda for the link: ${link.needed ? (link.linkDir ? `${link.linkDir}/libcuda.so → ${link.libcuda}` : link.note) : link.libcuda}`,
    );
  }
  const r = await sh(process.execPath, [cli, ...plan.build, "--json"], {
    env,
    timeoutMs: Math.min(plan.buildTimeoutS * 1000, left() - 60_000),
    onLine: (l) => {
      const m = /^gpu build: (configure|compile|install)/.exec(l);
      if (m) stages[m[1]] = Date.now() - t0;
      const p = /^gpu build: \[(\d+)\/(\d+)\]/.exec(l);
      if (p) last = { done: Number(p[1]), total: Number(p[2]), atS: Math.round((Date.now() - t0) / 1000) };
      if (m || p) log(l);
    },
  });
  let result = null;
  try {
    result = JSON.parse(r.stdout.trim().split("\n").pop() ?? "");
  } catch {}
  const seconds = (Date.now() - t0) / 1000;
  const end = (a, b) =>
    stages[a] !== undefined ? Math.round(((stages[b] ?? Date.now() - t0) - stages[a]) / 100) / 10 : null;
  run.build = {
    command: `aitbc-native-miner ${plan.build.join(" ")}`,
    ok: r.code === 0 && result !== null,
    state: result?.state ?? null,
    resumed: result?.resumed ?? null,
    seconds: Math.round(seconds),
    stagesS: {
      configure: end("configure", "compile"),
      compile: end("compile", "install"),
      install: end("install", "end"),
    },
    lastProgress: last,
    folderName: result?.folderName ?? null,
    releaseDir: result?.releaseDir ?? null,
    files: result?.files ?? null,
    flashAttention: plan.mode === "gpu" ? !plan.build.includes("--no-flash-attention") : null,
    sass: result?.sass ?? null,
    verdicts: result?.verdicts ?? null,
    exit: r.code ?? r.why,
    cudaDriverLink: run.cudaDriverLink ?? null,
    tail: r.code === 0 ? null : tail(r.stderr, 3000),
  };
  return step("build", {
    ok: run.build.ok,
    ms: r.ms,
    details: run.build.ok
      ? `${run.build.state} ${run.build.folderName}${last ? ` (${last.done}/${last.total} steps)` : ""}`
      : `exit ${r.code ?? r.why}${last ? `, stopped at ${last.done}/${last.total}` : ""}: ${tail(r.stderr, 300)}`,
  });
}

function modelPath(shape) {
  const name = modelName(shape, plan.type);
  // A folder per model: the miner serves (and warms) every model of its folder.
  return join(modelsDir, name, `${name}.gguf`);
}

/** Generate the models (one after the other; they run beside the build). */
async function makeModels() {
  run.models = [];
  for (const shape of plan.shapes) {
    const out = modelPath(shape);
    mkdirSync(dirname(out), { recursive: true });
    if (existsSync(out)) {
      run.models.push({
        shape,
        type: plan.type,
        file: out,
        bytes: statSync(out).size,
        genMs: 0,
        reused: true,
      });
      step(`model ${shape}`, { ok: true, details: "reused from an earlier run" });
      continue;
    }
    const r = await sh(
      process.execPath,
      [
        join(root, "scripts", "make-model.mjs"),
        "--shape",
        shape,
        "--type",
        plan.type,
        "--out",
        out,
        "--quiet",
      ],
      {
        timeoutMs: 240_000,
      },
    );
    const ok = r.code === 0 && existsSync(out);
    if (ok)
      run.models.push({
        shape,
        type: plan.type,
        file: out,
        bytes: statSync(out).size,
        genMs: r.ms,
        mbPerS: Number((statSync(out).size / 1e6 / (r.ms / 1000)).toFixed(0)),
      });
    step(`model ${shape}`, {
      ok,
      ms: r.ms,
      details: ok
        ? `${(statSync(out).size / 1e9).toFixed(2)} GB`
        : `exit ${r.code ?? r.why}: ${tail(r.stderr || r.stdout, 400)}`,
    });
  }
}

/** Read a file through (into the page cache) and time it: what a "page cache" load starts from. */
function readThrough(file) {
  const t0 = performance.now();
  return new Promise((done) => {
    let bytes = 0;
    createReadStream(file, { highWaterMark: 8 << 20 })
      .on("data", (b) => {
        bytes += b.length;
      })
      .on("end", () => done({ bytes, ms: performance.now() - t0 }))
      .on("error", () => done(null));
  });
}

// ---- measurements -----------------------------------------------------------------------------
async function demo() {
  const cache = join(work, "demo");
  const { jobs, concurrency, maxTokens } = plan.demo;
  const r = await sh(
    process.execPath,
    [
      cli,
      "demo",
      "--jobs",
      String(jobs),
      "--concurrency",
      String(concurrency),
      "--max-tokens",
      String(maxTokens),
      "--verbose",
      "--cache-dir",
      cache,
    ],
    {
      timeoutMs: 150_000,
    },
  );
  const out = r.stdout;
  const events = [];
  for (const l of r.stderr.split("\n")) {
    try {
      const e = JSON.parse(l);
      if (["model_loaded", "llama_runtime", "inference_runtime"].includes(e.event)) events.push(e);
    } catch {}
  }
  const loaded = events.find((e) => e.event === "model_loaded");
  let totalLayers = null;
  try {
    const { readGgufFileInfo } = await import("node-llama-cpp");
    const info = await readGgufFileInfo(join(cache, "models", "tiny.gguf"));
    const arch = info.metadata?.general?.architecture;
    const blocks = info.metadata?.[arch]?.block_count;
    if (typeof blocks === "number") totalLayers = blocks + 1; // + the output layer, as node-llama-cpp counts
  } catch {}
  const summary = /(\d+) jobs, (\d+) tokens, (\d+)\/(\d+) miner receipts verified/.exec(out);
  const runtime = events.find((e) => e.event === "llama_runtime");
  run.demo = {
    exit: r.code ?? r.why,
    ms: r.ms,
    inference: /^\s+inference\s+(.+)$/m.exec(out)?.[1]?.trim() ?? null,
    runtime: runtime ? { gpu: runtime.gpu, devices: runtime.devices ?? [] } : null,
    jobs: summary ? Number(summary[4]) : jobs,
    completed: (out.match(/^✔ /gm) ?? []).length,
    receiptsValid: summary ? Number(summary[3]) : (out.match(/receipt valid/g) ?? []).length,
    tokens: summary ? Number(summary[2]) : null,
    gpuLayers: loaded?.gpuLayers ?? null,
    totalLayers,
    allLayersOffloaded: loaded && totalLayers !== null ? loaded.gpuLayers >= totalLayers : null,
    modelLoadedLog: loaded ?? null,
    output: tail(out, 2500),
    stderr: r.code === 0 ? null : tail(r.stderr, 1500),
  };
  const d = run.demo;
  const everyJob = d.completed === d.jobs && d.receiptsValid === d.jobs;
  return step("demo", {
    ok: r.code === 0 && everyJob,
    ms: r.ms,
    details: `exit ${d.exit}; ${d.completed}/${d.jobs} completed, ${d.receiptsValid}/${d.jobs} receipts valid; inference ${d.inference}; gpuLayers ${d.gpuLayers}/${d.totalLayers}`,
  });
}

async function truth() {
  const state = join(work, "doctor-state");
  const doc = await sh(process.execPath, [cli, "doctor", "--json", "--state-dir", state], {
    timeoutMs: plan.mode === "gpu" ? 60_000 : 300_000,
  });
  let d = null;
  try {
    d = JSON.parse(doc.stdout);
  } catch {}
  const inf = d?.checks?.find((c) => c.name === "inference") ?? null;
  step("doctor --json", {
    ok: d !== null,
    ms: doc.ms,
    details: d
      ? `inference: ${inf?.status} ${String(inf?.detail ?? "").slice(0, 160)}`
      : `exit ${doc.code ?? doc.why}: ${tail(doc.stderr, 300)}`,
  });
  const tel = await sh(process.execPath, [cli, "telemetry", "--json", "--inference"], {
    timeoutMs: plan.mode === "gpu" ? 45_000 : 300_000,
  });
  let t = null;
  try {
    t = JSON.parse(tel.stdout);
  } catch {}
  step("telemetry --json --inference", {
    ok: t !== null,
    ms: tel.ms,
    details: t
      ? `inference: ${JSON.stringify(t.inference ?? null).slice(0, 200)}`
      : `exit ${tel.code ?? tel.why}: ${tail(tel.stderr, 300)}`,
  });
  // Would an operator's host, without the folders added above, run on CUDA too?
  let bare = null;
  if (runtimeEnv.LD_LIBRARY_PATH) {
    const b = await sh(process.execPath, [cli, "telemetry", "--json", "--inference"], {
      timeoutMs: 45_000,
      env: { LD_LIBRARY_PATH: process.env.LD_LIBRARY_PATH ?? "" },
    });
    try {
      bare = JSON.parse(b.stdout).inference ?? null;
    } catch {
      bare = { exit: b.code ?? b.why };
    }
  }
  const gpuNames = (run.host?.gpus ?? []).map((g) => g.name);
  const platform = t?.inference?.platform ?? null;
  const devices = t?.inference?.devices ?? [];
  run.truth = {
    doctor: d
      ? { exit: doc.code, inference: inf, checks: d.checks.map((c) => ({ name: c.name, status: c.status })) }
      : { exit: doc.code ?? doc.why, stderr: tail(doc.stderr, 1000) },
    telemetry: t
      ? { source: t.source ?? null, gpus: (t.gpus ?? []).map((g) => g.name), inference: t.inference ?? null }
      : { exit: tel.code ?? tel.why, stderr: tail(tel.stderr, 1000) },
    withoutAddedLibraryPath: bare,
    libraryPathAdded: runtimeEnv.LD_LIBRARY_PATH ?? null,
    expected:
      plan.mode === "gpu" ? { platform: "CUDA", devices: gpuNames } : { platform: "CPU", devices: [] },
    agrees:
      plan.mode === "gpu"
        ? platform === "CUDA" &&
          gpuNames.length > 0 &&
          gpuNames.every((n) => devices.some((x) => String(x).includes(n.replace(/^NVIDIA /, "")))) &&
          inf?.status === "ok"
        : platform === "CPU" && inf?.status !== "fail",
  };
  save();
}

async function single(shape) {
  const file = modelPath(shape);
  const name = modelName(shape, plan.type);
  if (!existsSync(file)) return skip(`single ${name}`, "no model");
  const read = await readThrough(file);
  if (shape === plan.throughputShape && read)
    run.coldLoad = {
      model: name,
      readMBps: Math.round(read.bytes / 1e6 / (read.ms / 1000)),
      readMs: Math.round(read.ms),
    };
  const r = await sh(
    process.execPath,
    [
      phases,
      "single",
      "--model",
      file,
      "--gpu",
      plan.gpu === false ? "false" : "auto",
      "--prompt",
      String(plan.single.promptTokens),
      "--tokens",
      String(plan.single.decodeTokens),
      "--threads",
      String(threads),
    ],
    {
      timeoutMs: plan.mode === "gpu" ? 120_000 : 600_000,
    },
  );
  const res = resultOf(r);
  if (res) run.single[name] = res;
  else run.single[name] = { error: `exit ${r.code ?? r.why}`, stderr: tail(r.stderr, 2000) };
  if (res && shape === plan.throughputShape)
    run.coldLoad = {
      model: name,
      ...run.coldLoad,
      loadModelMs: res.loadModelMs,
      loadLlamaMs: res.loadLlamaMs,
    };
  return step(`single ${name}`, {
    ok: res !== null,
    ms: r.ms,
    details: res
      ? `${res.gpu || "cpu"}, layers ${res.gpuLayers}/${res.totalLayers}, load ${res.loadModelMs} ms, prompt ${res.promptTokPerS} tok/s, decode ${res.decodeTokPerS} tok/s`
      : `exit ${r.code ?? r.why}: ${tail(r.stderr, 300)}`,
  });
}

async function aggregate() {
  const file = modelPath(plan.throughputShape);
  if (!existsSync(file)) return skip("aggregate", "no model");
  const gpu = plan.mode === "gpu";
  const timeoutMs = left() - 10_000;
  const r = await sh(
    process.execPath,
    [
      phases,
      "aggregate",
      "--model",
      file,
      "--gpu",
      plan.gpu === false ? "false" : "auto",
      "--levels",
      plan.levels.join(","),
      "--minJobs",
      String(plan.minJobs),
      "--tokens",
      String(plan.tokensPerJob),
      "--threads",
      String(threads),
      "--state",
      join(work, "state"),
      // A level is started only when it can end before the worker stops the child.
      "--deadline",
      String(Date.now() + timeoutMs - 5000),
      // What a level takes: two miners composed (each preflights and loads the model), the
      // runs, and per job in flight a little more (GPU, 8B: ~30 s at 1, ~50 s at 64).
      "--levelBaseMs",
      String(gpu ? 30_000 : 120_000),
      "--levelPerJobMs",
      String(gpu ? 300 : 30_000),
    ],
    { timeoutMs, onLine: (l) => log(l) },
  );
  const done = resultOf(r);
  const levels =
    done?.levels ??
    r.stdout
      .split("\n")
      .filter((l) => l.startsWith("@@LEVEL "))
      .map((l) => JSON.parse(l.slice(8)));
  run.aggregate = { rawLoadMs: done?.rawLoadMs ?? null, rawModelMiB: done?.rawModelMiB ?? null, levels };
  for (const c of plan.levels) {
    const l = levels.find((x) => x.inFlight === c);
    const name = `aggregate ${c} in flight`;
    if (!l) {
      step(name, {
        ok: false,
        details: `not measured: the child ${r.why ?? `exited ${r.code}`}: ${tail(r.stderr, 300)}`,
      });
      continue;
    }
    if (l.skipped) {
      skip(name, l.skipped);
      continue;
    }
    const f = (p) =>
      !l[p]
        ? `${p} —`
        : l[p].error
          ? `${p} error: ${String(l[p].error).split("\n")[0].slice(0, 160)}`
          : `${p} ${l[p].tokPerS ?? "?"} tok/s (${l[p].completed}/${l[p].jobs} completed, ${l[p].receiptsValid} receipts valid, gpuLayers ${l[p].gpuLayers}/${l.raw?.totalLayers ?? "?"}, pass-through ${l[p].passThrough ?? "?"})`;
    const ok =
      ["claim", "aitbc"].every((p) => l[p]?.completed === l.jobs && l[p]?.receiptsValid === l.jobs) &&
      l.raw?.tokPerS > 0;
    step(name, { ok, ms: l.ms ?? 0, details: `raw ${l.raw?.tokPerS} tok/s; ${f("claim")}; ${f("aitbc")}` });
  }
  return null;
}

// ---- the run ----------------------------------------------------------------------------------
async function main() {
  if (args.steps && existsSync(args.steps)) {
    for (const l of readFileSync(args.steps, "utf8").split("\n").filter(Boolean)) {
      try {
        const s = JSON.parse(l);
        run.steps.push({ name: s.step, ok: s.ok, ms: s.ms, details: s.details, shell: true });
      } catch {}
    }
  }
  await hostFacts();
  step("host", {
    ok: true,
    details: `${run.host.gpus.map((g) => g.name).join(", ") || "no GPU"}; ${run.host.nvcc ?? "no nvcc"}; ${run.host.cpuCount} CPUs`,
  });
  log(`plan: ${plan.label}; build: ${plan.build.join(" ")}; ${Math.round(left() / 1000)} s left`);
  // The models are written beside the build (disk and one core against the compiler's many).
  const models = makeModels();
  const built = await build();
  await models;
  if (!built.ok) {
    // Without the built backend the runtime would be the CPU prebuilt: no figure would be a GPU's.
    skip("demo", "build failed");
    await truth(); // still: what doctor and telemetry say on this host without it
    run.failure ??= "the backend did not build: nothing measured (see build.tail)";
    return;
  }
  // Minimum seconds a step needs to be worth starting, in the order the figures matter.
  const need = (s) => left() > s * 1000;
  const gpu = plan.mode === "gpu";
  if (need(gpu ? 40 : 120)) await demo();
  else skip("demo", "out of time");
  if (need(gpu ? 40 : 120)) await truth();
  else skip("doctor/telemetry", "out of time");
  const onGpu = !gpu || run.demo?.runtime?.gpu === "cuda";
  for (const shape of [plan.throughputShape, ...plan.shapes.filter((s) => s !== plan.throughputShape)]) {
    if (!onGpu) skip(`single ${modelName(shape, plan.type)}`, "the runtime is not on CUDA (see demo)");
    else if (need(gpu ? 30 : 180)) await single(shape);
    else skip(`single ${modelName(shape, plan.type)}`, "out of time");
  }
  if (!onGpu) skip("aggregate", "the runtime is not on CUDA (see demo)");
  else if (need(gpu ? 45 : 300)) await aggregate();
  else skip("aggregate", "out of time");
}

try {
  await main();
  run.complete = !stopping;
} catch (err) {
  run.failure ??= `worker error: ${String(err?.stack ?? err)}`;
}
const doc = save();
log(
  `report: ${args.out} (runOk ${doc.runOk}; ${doc.targets.map((t) => `${t.name} ${t.value ?? "—"}${t.met === null ? "" : t.met ? " ✓" : " ✗"}`).join(", ")})`,
);
process.exit(doc.runOk ? 0 : 1);
