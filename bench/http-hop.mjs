#!/usr/bin/env node
// HTTP hop: the same model, prompt and threads through the in-process llama backend vs through
// the Ollama adapter talking to a loopback Ollama stand-in (bench/ollama-standin.mjs, its own
// process, node-llama-cpp inside). Per-job latency and tokens/s, alternating jobs.
//   node bench/http-hop.mjs [--quick] [--threads N] [--tokens N]
import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import {
  BENCH_PRESET,
  benchArgs,
  createLlamaBackend,
  createOllamaBackend,
  ensureTinyModel,
  mmm,
  printTable,
  ratio,
  root,
  silentLogger,
  summary,
  TEST_PRESET,
  writeResult,
} from "./lib.mjs";

const args = benchArgs({ threads: { type: "string", default: "2" }, tokens: { type: "string" } });
const quick = args.quick;
const threads = Number(args.threads);
const preset = quick ? TEST_PRESET : BENCH_PRESET;
const tokens = Number(args.tokens ?? (quick ? 8 : 48));
const JOBS = quick ? 3 : 8;
const modelsDir = join(root, ".cache", "bench-models");
const modelPath = await ensureTinyModel(modelsDir, preset);

const standin = spawn(
  process.execPath,
  [
    join(root, "bench", "ollama-standin.mjs"),
    "--model",
    modelPath,
    "--name",
    preset.name,
    "--threads",
    String(threads),
  ],
  { stdio: ["ignore", "pipe", "inherit"] },
);
const url = await new Promise((resolve, reject) => {
  let text = "";
  standin.stdout.on("data", (d) => {
    text += d;
    const m = /listening (\S+)/.exec(text);
    if (m) resolve(m[1]);
  });
  standin.on("exit", (code) => reject(new Error(`ollama stand-in exited ${code}`)));
});

const log = silentLogger();
const backends = {
  llama: createLlamaBackend({ modelsDir, threads, concurrency: 1, gpu: false, log, preflight: false }),
  ollama: createOllamaBackend({ url, log, timeoutMs: 120_000, refreshIntervalMs: 0 }),
};
for (const b of Object.values(backends)) await b.init();
const req = {
  model: preset.name,
  prompt: "The quick brown fox",
  maxTokens: tokens,
  temperature: 0,
  stop: [],
};
const runs = { llama: { ms: [], tps: [] }, ollama: { ms: [], tps: [] } };
async function one(name, record) {
  const t0 = performance.now();
  const r = await backends[name].generate(req, new AbortController().signal);
  const ms = performance.now() - t0;
  if (record) {
    runs[name].ms.push(ms);
    runs[name].tps.push((r.completionTokens / ms) * 1000);
  }
}
// Warm-up: model load in both processes, first HTTP connection.
await one("llama", false);
await one("ollama", false);
for (let i = 0; i < JOBS; i++) {
  for (const name of i % 2 === 0 ? ["llama", "ollama"] : ["ollama", "llama"]) await one(name, true);
}
const l = { ms: summary(runs.llama.ms), tps: summary(runs.llama.tps) };
const o = { ms: summary(runs.ollama.ms), tps: summary(runs.ollama.tps) };
printTable(
  `HTTP hop: ${preset.name}, ${threads} threads, ${tokens} tokens/job, ${JOBS} alternating jobs each, CPU`,
  ["path", "latency ms min / median / max", "p99 ms", "tok/s min / median / max", "ratio (latency vs llama)"],
  [
    [
      "llama backend (in process)",
      mmm(runs.llama.ms, 1),
      l.ms.p99.toFixed(1),
      mmm(runs.llama.tps, 0),
      "1.00×",
    ],
    [
      "Ollama adapter → loopback stand-in",
      mmm(runs.ollama.ms, 1),
      o.ms.p99.toFixed(1),
      mmm(runs.ollama.tps, 0),
      ratio(o.ms.median, l.ms.median),
    ],
  ],
);
for (const b of Object.values(backends)) await b.close();
standin.kill("SIGTERM");
await once(standin, "exit").catch(() => undefined);
await writeResult(
  "http-hop",
  { settings: { model: preset.name, threads, tokens, jobs: JOBS }, llama: l, ollama: o },
  { quick },
);
process.exit(0);
