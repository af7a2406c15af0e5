#!/usr/bin/env node
// Pass-through: tokens/s of jobs through the whole miner (local coordinator, durable outbox,
// signed receipts, llama backend) vs node-llama-cpp called directly on the same model, threads
// and prompt, in alternating runs; aggregate at concurrency 1, 2, 4.
//   node bench/passthrough.mjs [--quick] [--threads N] [--tokens N]
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, LlamaCompletion } from "node-llama-cpp";
import {
  BENCH_PRESET,
  benchArgs,
  composeFromConfig,
  ensureTinyModel,
  finished,
  jobClock,
  mmm,
  printTable,
  ratio,
  root,
  startCoordinator,
  summary,
  TEST_PRESET,
  writeResult,
} from "./lib.mjs";

const args = benchArgs({ threads: { type: "string", default: "2" }, tokens: { type: "string" } });
const quick = args.quick;
const threads = Number(args.threads);
const preset = quick ? TEST_PRESET : BENCH_PRESET;
const tokens = Number(args.tokens ?? (quick ? 8 : 32));
const REPS = quick ? 1 : 3;
// --quick checks the path works; one level is enough for that.
const LEVELS = quick ? [1] : [1, 2, 4];
const PROMPT = "The quick brown fox";
const modelsDir = join(root, ".cache", "bench-models");
const modelPath = await ensureTinyModel(modelsDir, preset);

// ---- direct: one context with c sequences, c completions at once ----------------------------
const llama = await getLlama({ gpu: false, build: "never", maxThreads: threads });
const model = await llama.loadModel({ modelPath });
const contextSize = Math.min(model.trainContextSize || 4096, 4096);
const direct = {};
for (const c of LEVELS) {
  const context = await model.createContext({ sequences: c, contextSize, threads });
  direct[c] = { context, seqs: Array.from({ length: c }, () => context.getSequence()) };
}
async function runDirect(c, jobs) {
  let next = 0;
  let produced = 0;
  const t0 = performance.now();
  await Promise.all(
    direct[c].seqs.map(async (seq) => {
      while (next < jobs) {
        next++;
        await seq.clearHistory();
        const completion = new LlamaCompletion({ contextSequence: seq });
        await completion.generateCompletionWithMeta(PROMPT, {
          maxTokens: tokens,
          temperature: 0,
          disableContextShift: true,
          onToken: (t) => {
            produced += t.length;
          },
        });
      }
    }),
  );
  return { tokens: produced, seconds: (performance.now() - t0) / 1000 };
}

// ---- through the miner: a coordinator and a composed miner per concurrency --------------------
const miners = {};
for (const c of LEVELS) {
  const { coordinator, coordinatorKey } = await startCoordinator();
  const miner = await composeFromConfig(
    {
      coordinator: coordinator.url,
      apiKey: "bench-key-0f3a9c1d",
      minerId: `bench-pt-${c}`,
      backend: "llama",
      models: modelsDir,
      concurrency: c,
      threads,
      gpu: "cpu",
      stateDir: mkdtempSync(join(tmpdir(), "aitbc-bench-pt-")),
      logLevel: "silent",
      coordinatorKey: coordinatorKey.publicKeyHex,
      heartbeatInterval: 15,
    },
    // Three miners live side by side and two are idle at any time: an idle poll every 5 ms, not a
    // spin that would take the CPU from the one being measured (the time runs from the first
    // hand-out, so the pickup delay is not counted).
    { pollMinIntervalMs: 5, flushTimeoutMs: 5000 },
  );
  miners[c] = { coordinator, miner };
}
async function runMiner(c, jobs) {
  const { coordinator } = miners[c];
  const clock = jobClock(coordinator);
  const ids = [];
  for (let i = 0; i < jobs; i++) {
    ids.push(
      coordinator.enqueue({
        payload: { model: preset.name, prompt: PROMPT, max_tokens: tokens, temperature: 0 },
      }),
    );
  }
  await coordinator.waitFor(() => finished(clock, ids), 300_000);
  clock.off();
  const ev = ids.map((id) => clock.at.get(id));
  // From the first hand-out to the last acknowledged result: the idle miner's pickup delay is
  // the loop bench's business, not this one's.
  const seconds = (Math.max(...ev.map((e) => e.completed)) - Math.min(...ev.map((e) => e.assigned))) / 1000;
  const produced = ids.reduce((n, id) => n + Number(coordinator.job(id)?.minerReceipt?.units ?? 0), 0);
  const failed = ids.filter((id) => coordinator.job(id)?.state !== "COMPLETED").length;
  if (failed > 0) throw new Error(`${failed} job(s) did not complete through the miner`);
  return { tokens: produced, seconds };
}

// Warm up both paths (model load, first context use) before anything is timed.
for (const c of LEVELS) {
  await runDirect(c, c);
  await runMiner(c, c);
}
const rates = Object.fromEntries(LEVELS.map((c) => [c, { direct: [], miner: [] }]));
for (let rep = 0; rep < REPS; rep++) {
  for (const c of LEVELS) {
    const jobs = 2 * c;
    const order = rep % 2 === 0 ? ["direct", "miner"] : ["miner", "direct"];
    for (const which of order) {
      const r = which === "direct" ? await runDirect(c, jobs) : await runMiner(c, jobs);
      rates[c][which].push(r.tokens / r.seconds);
    }
  }
}
printTable(
  `pass-through: ${preset.name} (${preset.f16 ? "F16" : "F32"}, ${preset.layers} layers), ${threads} threads, ` +
    `${tokens} tokens/job, 2×c jobs per run, ${REPS} alternating runs, CPU`,
  [
    "concurrency",
    "direct tok/s min / median / max",
    "miner tok/s min / median / max",
    "ratio (miner/direct)",
  ],
  LEVELS.map((c) => [
    c,
    mmm(rates[c].direct, 0),
    mmm(rates[c].miner, 0),
    ratio(summary(rates[c].miner).median, summary(rates[c].direct).median),
  ]),
);

for (const c of LEVELS) {
  await miners[c].miner.stop();
  await miners[c].coordinator.close();
  await direct[c].context.dispose();
}
await model.dispose();
await writeResult(
  "passthrough",
  {
    settings: { model: preset.name, threads, tokens, reps: REPS, prompt: PROMPT },
    tokensPerSecond: Object.fromEntries(
      LEVELS.map((c) => [c, { direct: summary(rates[c].direct), miner: summary(rates[c].miner) }]),
    ),
  },
  { quick },
);
process.exit(0);
