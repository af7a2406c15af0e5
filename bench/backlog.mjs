#!/usr/bin/env node
// Backlog: a queue of short real-inference jobs (one token each) drained by the seed's loop and by
// the miner (as `run` composes it: durable journal and outbox, signed receipts, llama backend) at
// concurrency 1 and 4, all in the claim dialect against the local coordinator in its own process
// with no rate limit. ms/job = (last acknowledged result − first hand-out) / jobs.
//   node bench/backlog.mjs [--quick] [--threads N] [--jobs N]
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  BENCH_PRESET,
  benchArgs,
  composeFromConfig,
  createLlamaBackend,
  ensureTinyModel,
  mmm,
  printTable,
  ratio,
  root,
  silentLogger,
  startCoordinatorProcess,
  summary,
  TEST_PRESET,
  writeResult,
} from "./lib.mjs";
import { createSeedLoop } from "./seed-loop.mjs";

const args = benchArgs({ threads: { type: "string", default: "2" }, jobs: { type: "string" } });
const quick = args.quick;
const threads = Number(args.threads);
const JOBS = Number(args.jobs ?? (args.smoke ? 3 : quick ? 12 : 60));
// Five runs: on a shared 2-core host one run of the small model at c=4 ranges from 5 to 28 ms/job.
const REPS = quick ? 1 : 5;
// Both generated models: the one-token cost of inference itself differs ~2x between them, and
// what the loop adds on top is the point. --quick: the small one, fewer jobs.
const presets = quick ? [TEST_PRESET] : [TEST_PRESET, BENCH_PRESET];
const modelsDir = join(root, ".cache", "bench-models");

/** Drain `jobs` queued jobs with a loop that `start(coordinator)` starts; timings from the coordinator. */
async function drain(preset, start, jobs) {
  const co = await startCoordinatorProcess();
  const ids = await co.enqueue(
    Array.from({ length: jobs }, (_, i) => ({
      payload: { model: preset.name, prompt: `Backlog item ${i}:`, max_tokens: 1, temperature: 0 },
    })),
  );
  const loop = await start(co);
  await co.waitSettled(ids, 300_000);
  const ev = await co.times(ids);
  const states = await co.states(ids);
  await loop.stop();
  await co.close();
  const failed = states.filter((s) => s !== "COMPLETED").length;
  if (failed > 0) throw new Error(`${failed} of ${jobs} job(s) did not complete`);
  const span = Math.max(...ev.map((e) => e.completed)) - Math.min(...ev.map((e) => e.assigned));
  return { msPerJob: span / jobs, perJobMs: ev.map((e) => e.completed - e.assigned) };
}

/** The miner as `run` composes it, warm before it meets the queue (models preload at start). */
const miner = (c) => async (co) =>
  composeFromConfig(
    {
      coordinator: co.url,
      protocol: "claim",
      minerId: `bench-backlog-${c}`,
      backend: "llama",
      models: modelsDir,
      concurrency: c,
      threads,
      gpu: "cpu",
      stateDir: mkdtempSync(join(tmpdir(), "aitbc-bench-backlog-")),
      logLevel: "silent",
      coordinatorKey: co.coordinatorKey.publicKeyHex,
      heartbeatInterval: 15,
    },
    { pollMinIntervalMs: 0, flushTimeoutMs: 5000 },
  );

const results = {};
for (const preset of presets) {
  await ensureTinyModel(modelsDir, preset);
  // The seed's loop runs the llama backend directly (its own instance, one job at a time).
  const seedBackend = createLlamaBackend({
    modelsDir,
    threads,
    concurrency: 1,
    gpu: false,
    log: silentLogger(),
    unloadAfterJob: false,
  });
  await seedBackend.init();
  const seed = (co) => createSeedLoop({ url: co.url, minerId: "seed-miner", backend: seedBackend });
  const configs = [
    ["seed loop (claim)", seed],
    ["miner c=1 (claim)", miner(1)],
    ["miner c=4 (claim)", miner(4)],
  ].slice(0, args.smoke ? 2 : 3);
  // Warm-up: model loads and first contexts, untimed.
  for (const [, start] of configs) await drain(preset, start, args.smoke ? 1 : 4);
  const runs = Object.fromEntries(configs.map(([name]) => [name, []]));
  for (let rep = 0; rep < REPS; rep++) {
    for (let k = 0; k < configs.length; k++) {
      const [name, start] = configs[(k + rep) % configs.length];
      runs[name].push(await drain(preset, start, JOBS));
    }
  }
  await seedBackend.close();
  const seedMs = summary(runs["seed loop (claim)"].map((r) => r.msPerJob)).median;
  printTable(
    `backlog: ${JOBS} one-token jobs × ${REPS} runs, ${preset.name} (${preset.layers} layers), ${threads} threads, claim dialect, no rate limit, CPU`,
    ["loop", "ms/job min / median / max", "per-job p50 ms", "per-job p99 ms", "ratio (ms/job vs seed)"],
    configs.map(([name]) => {
      const r = runs[name];
      const per = summary(r.flatMap((x) => x.perJobMs));
      return [
        name,
        mmm(
          r.map((x) => x.msPerJob),
          2,
        ),
        per.p50.toFixed(2),
        per.p99.toFixed(2),
        ratio(summary(r.map((x) => x.msPerJob)).median, seedMs),
      ];
    }),
  );
  results[preset.name] = {
    msPerJob: Object.fromEntries(configs.map(([name]) => [name, summary(runs[name].map((r) => r.msPerJob))])),
    perJobMs: Object.fromEntries(
      configs.map(([name]) => [name, summary(runs[name].flatMap((r) => r.perJobMs))]),
    ),
  };
}
await writeResult(
  "backlog",
  {
    settings: {
      jobs: JOBS,
      reps: REPS,
      models: presets.map((p) => p.name),
      threads,
      maxTokens: 1,
      protocol: "claim",
    },
    results,
  },
  { quick },
);
process.exit(0);
