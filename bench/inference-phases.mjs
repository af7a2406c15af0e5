#!/usr/bin/env node
// The measurements of the inference acceptance (scripts/gpu-inference-acceptance.mjs), each run in
// a child process of its own so a crash or a time-out costs one figure, not the report; each
// prints one line "@@RESULT <json>" on stdout at its end, progress on stderr.
//   node bench/inference-phases.mjs single --model FILE [--gpu auto|false] [--prompt N] [--tokens N]
//     raw node-llama-cpp: cold load (the file in the page cache, useMmap: false as the miner
//     loads), layers offloaded (model.gpuLayers and llama.cpp's own log line), prompt and decode
//     tok/s on one sequence, VRAM by NVML before the runtime, after it, after the model and after
//     the context, beside admission's estimate (needMiB).
//   node bench/inference-phases.mjs aggregate --model FILE --levels 1,16,4,64 --tokens N [--gpu auto|false]
//     [--min-jobs N | --jobs-per-level N] [--deadline EPOCH_MS]
//     tok/s with C jobs in flight (max(minJobs, 2C) jobs per level): raw node-llama-cpp (one context
//     of C sequences) and the real miner (composeMiner, as `run` builds it with --concurrency C,
//     against a local coordinator) in the claim and the aitbc dialect, the same model, prompts and
//     token counts; per job: inference vs overhead; the miner's runtime start, preflight and load.
import { mkdirSync, mkdtempSync, statSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = (p) => import(join(root, "dist", p));
const say = (s) => process.stderr.write(`[${basename(process.argv[2] ?? "phase")}] ${s}\n`);
const r1 = (x) => (typeof x === "number" && Number.isFinite(x) ? Number(x.toFixed(1)) : null);
const MiB = 2 ** 20;
/** The miner's cap on a sequence's context (src/backends/llama/pool.ts DEFAULT_CONTEXT_CAP). */
const CONTEXT_CAP = 4096;
const PROMPT_TEXT =
  "The quick brown fox jumps over the lazy dog while the miner counts its tokens and signs its receipts. ";

function done(result) {
  process.stdout.write(`@@RESULT ${JSON.stringify(result)}\n`);
}

async function gpuSource() {
  const [{ createGpuInfoSource }, { silentLogger }] = await Promise.all([
    dist("gpu/index.js"),
    dist("log.js"),
  ]);
  const src = await createGpuInfoSource({ log: silentLogger() });
  if (src.kind !== "none") return src;
  await src.close();
  return null;
}

/** Used MiB on the first GPU and this process's own, from one NVML snapshot (null without one). */
async function vramNow(src) {
  if (!src) return null;
  try {
    const s = await src.snapshot();
    const d = s.devices[0];
    const own = (d?.processes ?? []).filter((p) => p.pid === process.pid);
    return {
      usedMiB: d?.memoryUsedMiB ?? null,
      ownMiB: own.length ? own.reduce((n, p) => n + (p.usedMemoryMiB ?? 0), 0) : null,
    };
  } catch (err) {
    return { error: String(err?.message ?? err) };
  }
}
const delta = (a, b) =>
  typeof a?.usedMiB === "number" && typeof b?.usedMiB === "number" ? b.usedMiB - a.usedMiB : null;

/** llama.cpp's log lines, kept for what they say about offloading ("offloaded 33/33 layers to GPU"). */
function llamaLog() {
  const lines = [];
  return {
    lines,
    logger: (_level, message) => {
      const t = String(message).trim();
      if (
        /offload|CUDA|VRAM|ggml_cuda|using device|model buffer size|KV buffer/i.test(t) &&
        lines.length < 80
      )
        lines.push(t);
    },
  };
}

// ---- single ---------------------------------------------------------------------------------
async function single(a) {
  const { getLlama, LlamaCompletion, LlamaLogLevel } = await import("node-llama-cpp");
  const { needMiB } = await dist("gpu/memory.js");
  const gpu = a.gpu === "false" ? false : "auto";
  const fileBytes = statSync(a.model).size;
  const src = gpu ? await gpuSource() : null;
  const v0 = await vramNow(src);
  const log = llamaLog();
  const t0 = performance.now();
  const llama = await getLlama({
    gpu,
    build: "never",
    maxThreads: Number(a.threads),
    logLevel: LlamaLogLevel.info,
    logger: log.logger,
  });
  const t1 = performance.now();
  const v1 = await vramNow(src);
  say(`runtime ${llama.gpu || "cpu"} (${llama.buildType}) in ${Math.round(t1 - t0)} ms; loading ${a.model}`);
  const model = await llama.loadModel({ modelPath: a.model, useMmap: false });
  const t2 = performance.now();
  const v2 = await vramNow(src);
  const contextSize = Math.min(model.trainContextSize || CONTEXT_CAP, CONTEXT_CAP);
  const context = await model.createContext({ sequences: 1, contextSize, threads: Number(a.threads) });
  const t3 = performance.now();
  const v3 = await vramNow(src);
  const seq = context.getSequence();
  say(`loaded in ${Math.round(t2 - t1)} ms, gpuLayers ${model.gpuLayers}/${model.fileInsights.totalLayers}`);

  // Prompt: N tokens evaluated at once (the context's batches), nothing generated.
  const base = model.tokenize(PROMPT_TEXT);
  const promptTokens = [];
  while (promptTokens.length < Number(a.prompt)) promptTokens.push(...base);
  promptTokens.length = Number(a.prompt);
  await seq.evaluateWithoutGeneratingNewTokens(promptTokens.slice(0, 16)); // first-use buffers
  await seq.clearHistory();
  const p0 = performance.now();
  await seq.evaluateWithoutGeneratingNewTokens(promptTokens);
  const promptMs = performance.now() - p0;
  await seq.clearHistory();

  // Decode: one completion of D tokens after a short prompt, as the miner runs one (greedy).
  let first = null;
  let last = null;
  let count = 0;
  const completion = new LlamaCompletion({ contextSequence: seq });
  const d0 = performance.now();
  await completion.generateCompletionWithMeta(PROMPT_TEXT, {
    maxTokens: Number(a.tokens),
    temperature: 0,
    disableContextShift: true,
    onToken: (t) => {
      const now = performance.now();
      first ??= now;
      last = now;
      count += t.length;
    },
  });
  completion.dispose({ disposeSequence: false });
  const vram = await llama.getVramState().catch(() => null);
  const devices = await llama.getGpuDeviceNames().catch(() => []);
  const estimateMiB = needMiB(fileBytes);
  const measuredMiB = delta(v0, v3);
  const result = {
    model: basename(a.model),
    fileBytes,
    gpu: llama.gpu,
    buildType: llama.buildType,
    devices,
    loadLlamaMs: Math.round(t1 - t0),
    loadModelMs: Math.round(t2 - t1),
    contextMs: Math.round(t3 - t2),
    contextSize,
    gpuLayers: model.gpuLayers,
    totalLayers: model.fileInsights.totalLayers,
    allLayersOffloaded: gpu !== false && model.gpuLayers >= model.fileInsights.totalLayers,
    offloadLog: log.lines.filter((l) => /offloaded/i.test(l)),
    llamaLog: log.lines.slice(0, 40),
    promptTokens: promptTokens.length,
    promptMs: Math.round(promptMs),
    promptTokPerS: r1((promptTokens.length / promptMs) * 1000),
    ttftMs: first === null ? null : Math.round(first - d0),
    decodeTokens: count,
    decodeTokPerS: count > 1 && last > first ? r1(((count - 1) / (last - first)) * 1000) : null,
    vram: src
      ? {
          estimateMiB,
          measuredMiB,
          ratio: measuredMiB ? Number((estimateMiB / measuredMiB).toFixed(3)) : null,
          cudaContextMiB: delta(v0, v1),
          weightsMiB: delta(v1, v2),
          contextMiB: delta(v2, v3),
          ownMiB: v3?.ownMiB ?? null,
          snapshots: { beforeRuntime: v0, afterRuntime: v1, afterModel: v2, afterContext: v3 },
          llamaVramState: vram
            ? { totalMiB: Math.round(vram.total / MiB), usedMiB: Math.round(vram.used / MiB) }
            : null,
        }
      : null,
  };
  await context.dispose();
  await model.dispose();
  await src?.close();
  done(result);
  await llama.dispose();
}

// ---- aggregate ------------------------------------------------------------------------------
const prompt = (i) => `Job ${i}: ${PROMPT_TEXT}`;

/** c workers over `jobs` completions on one context of c sequences (raw node-llama-cpp). */
async function runRaw(LlamaCompletion, seqs, jobs, tokens) {
  let next = 0;
  let produced = 0;
  const jobMs = [];
  const t0 = performance.now();
  await Promise.all(
    seqs.map(async (seq) => {
      while (next < jobs) {
        const i = next++;
        const j0 = performance.now();
        await seq.clearHistory();
        const completion = new LlamaCompletion({ contextSequence: seq });
        await completion.generateCompletionWithMeta(prompt(i), {
          maxTokens: tokens,
          temperature: 0,
          disableContextShift: true,
          onToken: (t) => {
            produced += t.length;
          },
        });
        completion.dispose({ disposeSequence: false });
        jobMs.push(performance.now() - j0);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  return {
    tokens: produced,
    seconds: r1(seconds),
    tokPerS: r1(produced / seconds),
    meanJobMs: r1(jobMs.reduce((n, x) => n + x, 0) / Math.max(1, jobMs.length)),
  };
}

/** The miner as `run` composes it, in one dialect, against a fresh local coordinator. */
async function runMiner(a, protocol, src) {
  const [{ composeMiner }, { runSchema }, { startLocalCoordinator }, rc, { createLogger }] =
    await Promise.all([
      dist("compose.js"),
      dist("config.js"),
      dist("local-coordinator/index.js"),
      dist("receipts/index.js"),
      dist("log.js"),
    ]);
  const key = rc.generateKeyPair();
  const apiKey = `accept-${process.pid}-${protocol}`;
  const coordinator = await startLocalCoordinator({
    apiKeys: [apiKey],
    rateLimits: { register: 1000, heartbeat: 10_000, poll: 1_000_000, result: 1_000_000 },
    verifyReceipt: (r) => {
      const v = rc.verifyReceipt(r, {});
      return v.valid ? { ok: true } : { ok: false, reason: v.reason };
    },
    signReceipt: (payload) => ({ ...payload, signature: rc.signPayload(payload, key) }),
  });
  // `run` logs at info; so does this miner, into a buffer that keeps what the report needs.
  const events = [];
  let loaded = null;
  const logger = createLogger({
    level: "info",
    destination: {
      write(line) {
        try {
          const e = JSON.parse(line);
          // The runtime, the model's preflight and load (their *_ended lines carry `ms`), errors.
          if (
            ["model_loaded", "llama_runtime", "inference_runtime"].includes(e.event) ||
            String(e.event).endsWith("_ended") ||
            e.level === "error"
          )
            events.push(e);
          if (e.event === "model_loaded") loaded?.(e);
        } catch {}
        return true;
      },
    },
  });
  const loadedEvent = new Promise((r) => {
    loaded = r;
  });
  const level = Number(a.level);
  const gpu = a.gpu === "false" ? "cpu" : "auto";
  const stateRoot = a.state ?? tmpdir();
  mkdirSync(stateRoot, { recursive: true });
  const tc = performance.now();
  const composed = await composeMiner(
    runSchema.parse({
      coordinator: coordinator.url,
      apiKey,
      minerId: `accept-${protocol}-${level}`,
      protocol,
      backend: "llama",
      models: dirname(a.model),
      concurrency: level,
      threads: Number(a.threads),
      gpu,
      stateDir: mkdtempSync(join(stateRoot, `accept-${protocol}-`)),
      logLevel: "info",
      coordinatorKey: key.publicKeyHex,
      heartbeatInterval: 15,
    }),
    logger,
    { pollMinIntervalMs: 5, flushTimeoutMs: 5000, allowCpuInference: a.gpu === "false" },
  );
  const compute = composed.compute;
  const running = composed.miner.run();
  const ev = await Promise.race([
    loadedEvent,
    new Promise((r) => setTimeout(() => r(null), Number(a.loadTimeoutMs ?? 240_000))),
  ]);
  const loadedAfterMs = Math.round(performance.now() - tc);
  const vramLoaded = await vramNow(src);
  const name = basename(a.model, ".gguf");
  const at = new Map();
  const off = coordinator.on((e) => {
    const t = performance.now();
    if (!("jobId" in e)) return;
    const x = at.get(e.jobId) ?? {};
    if (e.type === "assigned") x.assigned ??= t;
    if (e.type === "completed" || e.type === "failed") x.settled ??= t;
    at.set(e.jobId, x);
  });
  const enqueue = (n, tokens, from) =>
    Array.from({ length: n }, (_, i) =>
      coordinator.enqueue({
        payload: {
          type: "inference",
          model: name,
          prompt: prompt(from + i),
          max_tokens: tokens,
          temperature: 0,
        },
      }),
    );
  const settled = (ids) => ids.every((id) => at.get(id)?.settled !== undefined);
  const waitMs = Number(a.jobsTimeoutMs ?? 300_000);
  // Warm-up: a job per sequence (first use of each), not timed.
  const warm = enqueue(level, 4, 10_000);
  await coordinator.waitFor(() => settled(warm), waitMs).catch(() => undefined);
  const ids = enqueue(Number(a.jobs), Number(a.tokens), 0);
  let timedOut = false;
  await coordinator
    .waitFor(() => settled(ids), waitMs)
    .catch(() => {
      timedOut = true;
    });
  off();
  const jobs = ids.map((id) => coordinator.job(id));
  const times = ids.map((id) => at.get(id) ?? {});
  const firstAssigned = Math.min(...times.map((t) => t.assigned ?? Number.POSITIVE_INFINITY));
  const lastSettled = Math.max(...times.map((t) => t.settled ?? Number.NEGATIVE_INFINITY));
  const seconds = (lastSettled - firstAssigned) / 1000;
  const receipts = jobs.map((j) => j?.minerReceipt ?? null);
  const units = receipts.reduce((n, r) => n + Number(r?.units ?? 0), 0);
  const jobMs = times.filter((t) => t.settled && t.assigned).map((t) => t.settled - t.assigned);
  const inferMs = receipts.map((r) => Number(r?.duration_ms)).filter((x) => Number.isFinite(x));
  const mean = (xs) => (xs.length ? xs.reduce((n, x) => n + x, 0) / xs.length : null);
  // Gaps between one job's end and the next hand-out: the miner's pickup, per slot.
  const assigned = times
    .map((t) => t.assigned)
    .filter(Boolean)
    .sort((x, y) => x - y);
  const ends = times
    .map((t) => t.settled)
    .filter(Boolean)
    .sort((x, y) => x - y);
  const gaps = assigned.slice(level).map((t, i) => t - (ends[i] ?? t));
  const ended = (name) => events.find((e) => e.event === name)?.ms ?? null;
  await composed.miner.shutdown("acceptance over");
  const exit = await running;
  await composed.close();
  await coordinator.close();
  return {
    protocol,
    jobs: ids.length,
    completed: jobs.filter((j) => j?.state === "COMPLETED").length,
    receiptsValid: jobs.filter((j) => j?.receiptCheck?.ok === true).length,
    failures: jobs
      .filter((j) => j?.state !== "COMPLETED")
      .slice(0, 3)
      .map((j) => ({ state: j?.state ?? "missing", error: j?.error ?? null })),
    timedOut,
    tokens: units,
    seconds: r1(seconds),
    tokPerS: seconds > 0 ? r1(units / seconds) : null,
    meanJobMs: r1(mean(jobMs)),
    meanInferenceMs: r1(mean(inferMs)),
    meanOverheadMs: r1((mean(jobMs) ?? 0) - (mean(inferMs) ?? 0)),
    meanPickupGapMs: r1(mean(gaps)),
    compute: compute.ok
      ? {
          ok: true,
          platform: compute.platform,
          devices: compute.compute?.devices ?? [],
          note: compute.note ?? null,
        }
      : { ok: false, message: compute.message },
    loadedAfterMs,
    modelLoadedMs: ev?.ms ?? null,
    runtimeStartMs: ended("runtime_start_ended"),
    preflightMs: ended("model_preflight_ended"),
    loadActivityMs: ended("model_load_ended"),
    gpuLayers: ev?.gpuLayers ?? null,
    contextSize: ev?.contextSize ?? null,
    vramAfterLoad: vramLoaded,
    exitCode: exit?.code ?? null,
    events: events.slice(0, 20),
  };
}

/**
 * Every level in one process: raw node-llama-cpp's model is loaded once (a context of C sequences
 * per level), the miners are composed per level and dialect, as `run` would be with
 * --concurrency C. Each finished level is printed at once ("@@LEVEL <json>"): a kill keeps them.
 */
async function aggregate(a) {
  const { getLlama, LlamaCompletion, LlamaLogLevel } = await import("node-llama-cpp");
  const { needMiB } = await dist("gpu/memory.js");
  const gpu = a.gpu === "false" ? false : "auto";
  const src = gpu ? await gpuSource() : null;
  const estimateMiB = needMiB(statSync(a.model).size);
  const protocols = String(a.protocols).split(",");
  const deadline = Number(a.deadline ?? Number.POSITIVE_INFINITY);
  const perLevelMs = (c) => Number(a.levelBaseMs ?? 20_000) + c * Number(a.levelPerJobMs ?? 500);
  const v0 = await vramNow(src);
  const t0 = performance.now();
  const llama = await getLlama({
    gpu,
    build: "never",
    maxThreads: Number(a.threads),
    logLevel: LlamaLogLevel.warn,
  });
  const model = await llama.loadModel({ modelPath: a.model, useMmap: false });
  const rawLoadMs = Math.round(performance.now() - t0);
  const vRaw = await vramNow(src);
  const contextSize = Math.min(model.trainContextSize || CONTEXT_CAP, CONTEXT_CAP);
  const levels = [];
  for (const level of String(a.levels).split(",").map(Number)) {
    if (Date.now() + perLevelMs(level) > deadline) {
      say(`${level} in flight: skipped, out of time`);
      levels.push({ inFlight: level, skipped: "out of time" });
      continue;
    }
    const jobs =
      Number(a.jobsPerLevel) > 0 ? Number(a.jobsPerLevel) : Math.max(Number(a.minJobs ?? 4), 2 * level);
    const tl = performance.now();
    const result = { inFlight: level, jobs, tokensPerJob: Number(a.tokens) };
    for (const protocol of protocols) {
      say(`miner, ${protocol} dialect, ${level} in flight, ${jobs} jobs`);
      const before = await vramNow(src);
      try {
        const m = await runMiner({ ...a, level, jobs }, protocol, src);
        m.vramMiB = delta(before, m.vramAfterLoad);
        result[protocol] = m;
      } catch (err) {
        result[protocol] = { error: String(err?.stack ?? err) };
      }
    }
    say(`raw node-llama-cpp, ${level} in flight, ${jobs} jobs`);
    try {
      const context = await model.createContext({
        sequences: level,
        contextSize,
        threads: Number(a.threads),
      });
      const seqs = Array.from({ length: level }, () => context.getSequence());
      await runRaw(LlamaCompletion, seqs, level, 4); // warm-up: every sequence once
      result.raw = { ...(await runRaw(LlamaCompletion, seqs, jobs, Number(a.tokens))), contextSize };
      await context.dispose();
    } catch (err) {
      result.raw = { error: String(err?.stack ?? err) };
    }
    Object.assign(result.raw, {
      gpu: llama.gpu,
      gpuLayers: model.gpuLayers,
      totalLayers: model.fileInsights.totalLayers,
    });
    for (const p of protocols)
      if (result[p]?.tokPerS && result.raw.tokPerS)
        result[p].passThrough = Number((result[p].tokPerS / result.raw.tokPerS).toFixed(3));
    result.vram = src
      ? {
          estimateMiB,
          minerMiB: result.aitbc?.vramMiB ?? result.claim?.vramMiB ?? null,
          note: `NVML used memory after the miner's load (a context of ${level} sequences × ${contextSize} tokens) minus before it`,
        }
      : null;
    result.ms = Math.round(performance.now() - tl);
    process.stdout.write(`@@LEVEL ${JSON.stringify(result)}\n`);
    levels.push(result);
  }
  await model.dispose();
  await src?.close();
  done({ rawLoadMs, rawModelMiB: delta(v0, vRaw), levels });
  await llama.dispose();
}

const phase = process.argv[2];
const { values } = parseArgs({
  args: process.argv.slice(3),
  options: {
    model: { type: "string" },
    gpu: { type: "string", default: "auto" },
    prompt: { type: "string", default: "512" },
    tokens: { type: "string", default: "128" },
    threads: { type: "string", default: String(availableParallelism()) },
    levels: { type: "string", default: "1" },
    jobsPerLevel: { type: "string" },
    minJobs: { type: "string" },
    deadline: { type: "string" },
    levelBaseMs: { type: "string" },
    levelPerJobMs: { type: "string" },
    protocols: { type: "string", default: "claim,aitbc" },
    state: { type: "string" },
    loadTimeoutMs: { type: "string" },
    jobsTimeoutMs: { type: "string" },
  },
});
if (!values.model || !["single", "aggregate"].includes(phase)) {
  process.stderr.write("usage: inference-phases.mjs single|aggregate --model FILE [options]\n");
  process.exit(2);
}
try {
  await (phase === "single" ? single(values) : aggregate(values));
  process.exit(0);
} catch (err) {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
}
