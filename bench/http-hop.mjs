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
  zeroBackend,
} from "./lib.mjs";

const args = benchArgs({ threads: { type: "string", default: "2" }, tokens: { type: "string" } });
const quick = args.quick;
const threads = Number(args.threads);
const preset = quick ? TEST_PRESET : BENCH_PRESET;
const tokens = Number(args.tokens ?? (args.smoke ? 4 : quick ? 8 : 48));
const JOBS = args.smoke ? 2 : quick ? 3 : 8;
const modelsDir = join(root, ".cache", "bench-models");
const modelPath = await ensureTinyModel(modelsDir, preset);

/** An Ollama stand-in in its own process; resolves with it and its URL. */
async function startStandin(args) {
  const child = spawn(process.execPath, [join(root, "bench", "ollama-standin.mjs"), ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise((resolve, reject) => {
    let text = "";
    child.stdout.on("data", (d) => {
      text += d;
      const m = /listening (\S+)/.exec(text);
      if (m) resolve(m[1]);
    });
    child.on("exit", (code) => reject(new Error(`ollama stand-in exited ${code}`)));
  });
  return { child, url };
}
const standinProc = await startStandin([
  "--model",
  modelPath,
  "--name",
  preset.name,
  "--threads",
  String(threads),
]);
const standin = standinProc.child;
const url = standinProc.url;

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
/**
 * Alternating jobs of `maxTokens` tokens, in pairs (which path goes first alternates). Besides
 * each path's latencies, the per-pair difference Ollama − llama: drift on a shared host moves
 * both jobs of a pair alike, so the median difference is the hop's cost per job.
 */
async function alternate(maxTokens, pairs) {
  const runs = { llama: { ms: [], tps: [] }, ollama: { ms: [], tps: [] }, diffMs: [] };
  const one = async (name) => {
    const t0 = performance.now();
    const r = await backends[name].generate({ ...req, maxTokens }, new AbortController().signal);
    const ms = performance.now() - t0;
    runs[name].ms.push(ms);
    runs[name].tps.push((r.completionTokens / ms) * 1000);
    return ms;
  };
  for (let i = 0; i < pairs; i++) {
    const t = {};
    for (const name of i % 2 === 0 ? ["llama", "ollama"] : ["ollama", "llama"]) t[name] = await one(name);
    runs.diffMs.push(t.ollama - t.llama);
  }
  return runs;
}
// Warm-up: model load in both processes, first HTTP connection.
await alternate(tokens, 1);
const PAIRS_SHORT = args.smoke ? 3 : quick ? 6 : 60;
const long = await alternate(tokens, JOBS);
const short = await alternate(1, PAIRS_SHORT);

const row = (label, runs, digits) => [
  label,
  mmm(runs.ms, digits),
  summary(runs.ms).p99.toFixed(digits),
  mmm(runs.tps, 0),
];
const l = { ms: summary(long.llama.ms), tps: summary(long.llama.tps) };
const o = { ms: summary(long.ollama.ms), tps: summary(long.ollama.tps) };
printTable(
  `HTTP hop: ${preset.name}, ${threads} threads, ${tokens} tokens/job, ${JOBS} alternating pairs, CPU`,
  ["path", "latency ms min / median / max", "p99 ms", "tok/s min / median / max", "ratio (latency vs llama)"],
  [
    [...row("llama backend (in process)", long.llama, 1), "1.00×"],
    [...row("Ollama adapter → loopback stand-in", long.ollama, 1), ratio(o.ms.median, l.ms.median)],
  ],
);
const sd = summary(short.diffMs);
const llamaAhead = short.diffMs.filter((d) => d > 0).length;
printTable(
  `HTTP hop, 1-token jobs (the hop's share is largest): ${PAIRS_SHORT} alternating pairs`,
  ["path", "latency ms min / median / max", "p99 ms", "ratio (latency vs llama)"],
  [
    [...row("llama backend (in process)", short.llama, 2).slice(0, 3), "1.00×"],
    [
      ...row("Ollama adapter → loopback stand-in", short.ollama, 2).slice(0, 3),
      ratio(summary(short.ollama.ms).median, summary(short.llama.ms).median),
    ],
    [
      "per pair, Ollama − llama (the hop's cost)",
      `${sd.min.toFixed(2)} / ${sd.median.toFixed(2)} / ${sd.max.toFixed(2)}`,
      sd.p99.toFixed(2),
      `in process faster in ${llamaAhead} of ${PAIRS_SHORT} pairs`,
    ],
  ],
);
for (const b of Object.values(backends)) await b.close();
standin.kill("SIGTERM");
await once(standin, "exit").catch(() => undefined);

// The hop alone: both sides answer at once (a backend in process; the adapter against a stand-in
// that answers without a model), so what remains is what the HTTP path itself costs per job.
const instantProc = await startStandin(["--instant", "--name", "instant"]);
const hopOnly = {
  inProcess: zeroBackend("instant"),
  ollama: createOllamaBackend({ url: instantProc.url, log, timeoutMs: 10_000, refreshIntervalMs: 0 }),
};
for (const b of Object.values(hopOnly)) await b.init();
const HOP_JOBS = args.smoke ? 20 : quick ? 50 : 1000;
const hopMs = { inProcess: [], ollama: [] };
const instantReq = { ...req, model: "instant", maxTokens: 1 };
for (let i = 0; i < HOP_JOBS + 50; i++) {
  for (const name of i % 2 === 0 ? ["inProcess", "ollama"] : ["ollama", "inProcess"]) {
    const t0 = performance.now();
    await hopOnly[name].generate(instantReq, new AbortController().signal);
    if (i >= 50) hopMs[name].push(performance.now() - t0);
  }
}
for (const b of Object.values(hopOnly)) await b.close();
instantProc.child.kill("SIGTERM");
await once(instantProc.child, "exit").catch(() => undefined);
const hi = summary(hopMs.inProcess);
const ho = summary(hopMs.ollama);
printTable(
  `HTTP hop alone: ${HOP_JOBS} alternating jobs each, both sides answering at once`,
  ["path", "per job p50 ms", "p99 ms", "ratio (p50 vs in process)"],
  [
    ["backend in process (answers at once)", hi.p50.toFixed(3), hi.p99.toFixed(3), "1.00×"],
    ["Ollama adapter → instant stand-in", ho.p50.toFixed(3), ho.p99.toFixed(3), ratio(ho.p50, hi.p50, 0)],
  ],
);
await writeResult(
  "http-hop",
  {
    settings: { model: preset.name, threads, tokens, jobs: JOBS, shortPairs: PAIRS_SHORT },
    llama: l,
    ollama: o,
    oneToken: {
      llama: summary(short.llama.ms),
      ollama: summary(short.ollama.ms),
      hopMsPerPair: sd,
      inProcessFasterPairs: llamaAhead,
    },
    hopAlone: { jobs: HOP_JOBS, inProcessMs: hi, ollamaMs: ho },
  },
  { quick },
);
process.exit(0);
