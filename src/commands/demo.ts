// `demo`: the whole flow on one host with nothing else installed — a local coordinator on a free
// loopback port, a generated tiny model, the real llama backend, real signed receipts.
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import type { Command } from "commander";
import { ensureTinyModel } from "../backends/tiny-gguf.js";
import { composeMiner } from "../compose.js";
import { parseIntFlag, type RunConfig, runSchema } from "../config.js";
import { DEFAULT_DIALECT, dialectNames, isDialect } from "../coordinator/dialects.js";
import { startLocalCoordinator } from "../local-coordinator/index.js";
import { createLogger } from "../log.js";
import { defaultCacheDir } from "../paths.js";
import { generateKeyPair, signPayload, verifyReceipt } from "../receipts/index.js";

const PROMPTS = [
  "The miner wakes up and",
  "Once upon a time, a GPU",
  "Receipts prove that",
  "In a small data center,",
  "The coordinator said:",
  "Tokens flow like",
  "A tiny model dreams of",
  "Every job ends with",
];

interface DemoOptions {
  jobs: string;
  concurrency: string;
  maxTokens: string;
  protocol: string;
  cacheDir: string;
  verbose?: boolean;
}

/** The demo's numeric flags, each range written once: its help and its check come from here. */
const NUMBERS = {
  jobs: { flag: "--jobs", help: "jobs to queue", min: 1, max: 50, dflt: 5 },
  concurrency: { flag: "--concurrency", help: "jobs in flight at once", min: 1, max: 8, dflt: 2 },
  maxTokens: { flag: "--max-tokens", help: "tokens per job", min: 1, max: 256, dflt: 24 },
} as const;

export function register(program: Command): void {
  const demo = program
    .command("demo")
    .description(
      "mine a few jobs end to end on this host: a local coordinator, a generated tiny model, " +
        "in-process inference and signed receipts (no GPU, network or model download needed)",
    );
  for (const n of Object.values(NUMBERS)) {
    demo.option(`${n.flag} <N>`, `${n.help} (${n.min}-${n.max})`, String(n.dflt));
  }
  demo
    .option(`--protocol <${dialectNames().join("|")}>`, "coordinator dialect to demonstrate", DEFAULT_DIALECT)
    .option("--cache-dir <DIR>", "where the tiny model and demo state live", join(defaultCacheDir(), "demo"))
    .option("--verbose", "show the miner's structured log lines")
    .action(async (opts: DemoOptions) => {
      process.exitCode = await runDemo(opts);
    });
}

async function runDemo(opts: DemoOptions): Promise<number> {
  const t0 = performance.now();
  const number = (k: keyof typeof NUMBERS) =>
    parseIntFlag(NUMBERS[k].flag, opts[k], NUMBERS[k].min, NUMBERS[k].max);
  const [jobs, concurrency, maxTokens] = [number("jobs"), number("concurrency"), number("maxTokens")];
  if (!isDialect(opts.protocol)) throw new Error(`--protocol must be ${dialectNames().join(" or ")}`);
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const log = createLogger({ level: opts.verbose ? "info" : "warn" });

  const modelsDir = join(opts.cacheDir, "models");
  const stateDir = join(opts.cacheDir, "state");
  mkdirSync(modelsDir, { recursive: true });
  out("aitbc-native-miner demo");
  const modelPath = await ensureTinyModel(modelsDir, { name: "tiny" });
  out(`  model        tiny  (${modelPath}, generated, deterministic random weights)`);

  // The local coordinator signs its own receipts with a throwaway key; the miner verifies them.
  const coordinatorKey = generateKeyPair();
  const apiKey = `demo-${randomBytes(12).toString("hex")}`;
  const coordinator = await startLocalCoordinator({
    apiKeys: [apiKey],
    // One miner on loopback: the reference per-minute limits would only slow the demo down.
    rateLimits: { register: 1000, heartbeat: 10_000, poll: 100_000, result: 10_000 },
    signReceipt: (payload) => ({ ...payload, signature: signPayload(payload, coordinatorKey) }),
  });
  out(`  coordinator  ${coordinator.url}  (local, in memory, protocol ${opts.protocol})`);

  const jobIds: string[] = [];
  for (let i = 0; i < jobs; i++) {
    jobIds.push(
      coordinator.enqueue({
        payload: {
          type: "inference",
          model: "tiny",
          prompt: PROMPTS[i % PROMPTS.length]!,
          max_tokens: maxTokens,
          temperature: 0,
        },
      }),
    );
  }
  out(`  jobs         ${jobs} queued, concurrency ${concurrency}`);

  const cfg: RunConfig = runSchema.parse({
    coordinator: coordinator.url,
    apiKey,
    minerId: "demo-miner",
    protocol: opts.protocol,
    backend: "llama",
    models: modelsDir,
    concurrency,
    threads: Math.min(2, availableParallelism()),
    gpu: "auto",
    stateDir,
    logLevel: opts.verbose ? "info" : "warn",
    coordinatorKey: coordinatorKey.publicKeyHex,
    heartbeatInterval: 5,
    jobTimeout: 120,
    gracePeriod: 10,
  });
  // A demo shows the flow on any host: on the CPU too, saying so, where `run` would refuse.
  const composed = await composeMiner(cfg, log, {
    pollMinIntervalMs: 50,
    flushTimeoutMs: 5000,
    allowCpuInference: true,
  });
  const c = composed.compute;
  if (!c.ok) {
    out(`✘ inference   ${c.message}`);
    await composed.close();
    await composed.backend.close().catch(() => undefined);
    await coordinator.close();
    return 1;
  }
  const devices = c.compute?.devices.length ? ` (${c.compute.devices.join(", ")})` : "";
  out(`  inference    ${c.platform}${devices}${c.note ? `: ${c.note}` : ""}`);
  out("");
  const running = composed.miner.run();
  let exitCode = 0;
  try {
    await coordinator.waitFor((c) => jobIds.every((id) => isFinal(c.job(id)?.state)), 120_000);
  } catch {
    out("demo: jobs did not finish within 120 s (run with --verbose to see why)");
    exitCode = 1;
  }
  await composed.miner.shutdown("demo finished");
  const exit = await running;
  await composed.close();

  let tokens = 0;
  let valid = 0;
  for (const id of jobIds) {
    const job = coordinator.job(id);
    const receipt = asRecord(job?.minerReceipt);
    if (job?.state !== "COMPLETED" || !receipt) {
      out(
        `✘ ${id}  ${job?.state ?? "missing"}  ${job?.error ? `${job.error.code}: ${job.error.message}` : ""}`,
      );
      exitCode = 1;
      continue;
    }
    const check = verifyReceipt(receipt, {});
    if (check.valid) valid++;
    const units = typeof receipt["units"] === "number" ? receipt["units"] : 0;
    tokens += units;
    out(
      `✔ ${id}  ${String(receipt["model"])}  ${units} tokens  ${String(receipt["duration_ms"])} ms  ` +
        `receipt ${check.valid ? "valid" : `INVALID (${check.reason})`}`,
    );
    out(`    prompt  ${JSON.stringify(job.payload["prompt"])}`);
    out(`    output  ${JSON.stringify(asRecord(job.result)?.["output"])}`);
  }
  const seconds = (performance.now() - t0) / 1000;
  out("");
  out(
    `${jobIds.length} jobs, ${tokens} tokens, ${valid}/${jobIds.length} miner receipts verified, ` +
      `coordinator receipts in ${join(stateDir, "receipts.jsonl")}; ${seconds.toFixed(1)} s in all`,
  );
  await coordinator.close();
  if (exit.code !== 0) return exit.code;
  return valid === jobIds.length ? exitCode : 1;
}

function asRecord(v: unknown): Record<string, unknown> | null {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}

function isFinal(state: string | undefined): boolean {
  return state === "COMPLETED" || state === "FAILED";
}
