#!/usr/bin/env node
// Tokens per second of the generated models on this host (CPU unless a GPU runtime loads).
//   node bench/llama.mjs [--threads N] [--tokens N] [--preset test|bench|both]
// Needs dist/ (npm run build). Models are cached under .cache/bench-models/.
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createLlamaBackend } from "../dist/backends/llama/index.js";
import { BENCH_PRESET, ensureTinyModel, TEST_PRESET } from "../dist/backends/tiny-gguf.js";
import { silentLogger } from "../dist/log.js";

const { values } = parseArgs({
  options: {
    threads: { type: "string", default: "1" },
    tokens: { type: "string", default: "128" },
    preset: { type: "string", default: "both" },
    gpu: { type: "boolean", default: false },
  },
});
const threads = Number(values.threads);
const tokens = Number(values.tokens);
const dir = join(import.meta.dirname ?? ".", "..", ".cache", "bench-models");
const presets =
  values.preset === "both"
    ? [TEST_PRESET, BENCH_PRESET]
    : [values.preset === "bench" ? BENCH_PRESET : TEST_PRESET];

for (const preset of presets) {
  await ensureTinyModel(dir, preset);
  const backend = createLlamaBackend({
    modelsDir: dir,
    threads,
    concurrency: 1,
    gpu: values.gpu ? "auto" : false,
    log: silentLogger(),
    preflight: false,
  });
  await backend.init();
  const job = {
    model: preset.name,
    prompt: "The quick brown fox",
    maxTokens: tokens,
    temperature: 0,
    stop: [],
  };
  await backend.generate({ ...job, maxTokens: 8 }, new AbortController().signal); // load + warm up
  const rates = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    const r = await backend.generate(job, new AbortController().signal);
    rates.push((r.completionTokens / (performance.now() - t0)) * 1000);
  }
  rates.sort((a, b) => a - b);
  const median = rates[1];
  process.stdout.write(
    `${preset.name.padEnd(11)} vocab ${preset.vocab} embd ${preset.embd} layers ${preset.layers} ` +
      `${preset.f16 ? "F16" : "F32"}  threads ${threads}  ${tokens} tokens  median ${median.toFixed(0)} tok/s\n`,
  );
  await backend.close();
}
