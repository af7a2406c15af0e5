// `bench`: how fast this host mines, measured side by side in one run — the same jobs one at a
// time and then batched on N sequences of one context — and the GPU snapshot cost.
import { availableParallelism } from "node:os";
import { join } from "node:path";
import type { Command } from "commander";
import { BENCH_PRESET, ensureTinyModel, TEST_PRESET } from "../backends/tiny-gguf.js";
import type { Backend, InferenceRequest } from "../backends/types.js";
import { parseIntFlag } from "../config.js";
import { createGpuInfoSource } from "../gpu/index.js";
import { silentLogger } from "../log.js";
import { defaultCacheDir } from "../paths.js";

interface BenchOptions {
  models?: string;
  model?: string;
  concurrency: string;
  jobs: string;
  maxTokens: string;
  threads: string;
  gpu: "auto" | "cpu";
  small?: boolean;
  json?: boolean;
}

async function timeJobs(
  backend: Backend,
  jobs: InferenceRequest[],
  parallel: boolean,
): Promise<{ ms: number; tokens: number }> {
  const t0 = performance.now();
  let tokens = 0;
  if (parallel) {
    const rs = await Promise.all(jobs.map((j) => backend.generate(j, new AbortController().signal)));
    for (const r of rs) tokens += r.completionTokens;
  } else {
    for (const j of jobs)
      tokens += (await backend.generate(j, new AbortController().signal)).completionTokens;
  }
  return { ms: performance.now() - t0, tokens };
}

export function register(program: Command): void {
  program
    .command("bench")
    .description(
      "measure this host: tokens/s running jobs one at a time vs batched on N sequences " +
        "(side by side, same model, same run), and the cost of a GPU snapshot",
    )
    .option("--models <DIR>", "models directory (default: a generated 55 MB benchmark model)")
    .option("--model <NAME>", "model to benchmark from --models")
    .option("--concurrency <N>", "sequences for the batched run", "4")
    .option("--jobs <N>", "jobs per run", "8")
    .option("--max-tokens <N>", "tokens per job", "64")
    .option("--threads <N>", "CPU threads", String(availableParallelism()))
    .option("--gpu <auto|cpu>", "use CUDA when available, or force CPU", "auto")
    .option("--small", "use the 0.5 MB test model instead of the benchmark model")
    .option("--json", "machine-readable output")
    .action(async (opts: BenchOptions) => {
      const concurrency = parseIntFlag("--concurrency", opts.concurrency, 1, 64);
      const jobsN = parseIntFlag("--jobs", opts.jobs, 1, 1000);
      const maxTokens = parseIntFlag("--max-tokens", opts.maxTokens, 1, 4096);
      const threads = parseIntFlag("--threads", opts.threads, 1, 1024);
      const say = (line: string) => {
        if (!opts.json) process.stdout.write(`${line}\n`);
      };

      let modelsDir = opts.models;
      let model = opts.model;
      if (!modelsDir) {
        const preset = opts.small ? TEST_PRESET : BENCH_PRESET;
        modelsDir = join(defaultCacheDir(), "bench-models");
        say(`generating/reusing the ${preset.name} model in ${modelsDir}...`);
        await ensureTinyModel(modelsDir, preset);
        model = preset.name;
      }
      const { createLlamaBackend } = await import("../backends/llama/index.js");
      const make = (n: number) =>
        createLlamaBackend({
          modelsDir,
          threads,
          concurrency: n,
          gpu: opts.gpu === "cpu" ? false : "auto",
          log: silentLogger(),
        });
      const probe = make(1);
      await probe.init();
      model ??= probe.listModels()[0]?.name;
      await probe.close();
      if (!model) throw new Error(`no model found in ${modelsDir}`);
      const jobs: InferenceRequest[] = Array.from({ length: jobsN }, (_, i) => ({
        model: model!,
        prompt: `Benchmark prompt number ${i}:`,
        maxTokens,
        temperature: 0,
        stop: [],
      }));

      // Both runs use the same backend configuration (N sequences), so the only difference is batching.
      const backend = make(concurrency);
      await backend.init();
      await backend.generate({ ...jobs[0]!, maxTokens: 4 }, new AbortController().signal); // load + warm up
      const one = await timeJobs(backend, jobs, false);
      const batched = await timeJobs(backend, jobs, true);
      await backend.close();

      const gpu = await createGpuInfoSource({ log: silentLogger(), nvmlLibrary: undefined });
      let snapshotUs: number | null = null;
      try {
        if (gpu.kind === "none") throw new Error("no GPU");
        await gpu.snapshot();
        const n = gpu.kind === "nvml" ? 200 : 5;
        const t0 = performance.now();
        for (let i = 0; i < n; i++) await gpu.snapshot();
        snapshotUs = ((performance.now() - t0) / n) * 1000;
      } catch {
        snapshotUs = null;
      } finally {
        await gpu.close();
      }

      const seqRate = (one.tokens / one.ms) * 1000;
      const batRate = (batched.tokens / batched.ms) * 1000;
      const result = {
        model,
        threads,
        jobs: jobsN,
        maxTokens,
        concurrency,
        sequentialTokensPerS: Number(seqRate.toFixed(1)),
        batchedTokensPerS: Number(batRate.toFixed(1)),
        batchedOverSequential: Number((batRate / seqRate).toFixed(2)),
        gpuSource: gpu.kind,
        gpuSnapshotUs: snapshotUs === null ? null : Number(snapshotUs.toFixed(1)),
      };
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(result)}\n`);
        return;
      }
      say(`model ${model}, ${jobsN} jobs x ${maxTokens} tokens, ${threads} thread(s)`);
      say(`  one at a time        ${seqRate.toFixed(0).padStart(8)} tok/s`);
      say(`  batched (${String(concurrency).padStart(2)} seqs)    ${batRate.toFixed(0).padStart(8)} tok/s`);
      say(`  ratio batched/one    ${(batRate / seqRate).toFixed(2).padStart(8)}x`);
      say(
        `  GPU snapshot         ${snapshotUs === null ? "n/a" : `${snapshotUs.toFixed(0)} µs`} (${gpu.kind}${gpu.reason ? `: ${gpu.reason}` : ""})`,
      );
    });
}
