// Shared pieces of the end-to-end suites: a local coordinator that checks receipts, the tiny
// model, and a miner composed exactly as `run` composes it.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type ComposeOverrides, composeMiner } from "../../src/compose.js";
import { type RunConfig, runSchema } from "../../src/config.js";
import type { LocalCoordinatorOptions } from "../../src/local-coordinator/index.js";
import { startLocalCoordinator } from "../../src/local-coordinator/index.js";
import { createLogger, type Logger, silentLogger } from "../../src/log.js";
import { generateKeyPair, signPayload, verifyReceipt } from "../../src/receipts/index.js";

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const modelsDir = join(repoRoot, "test", ".fixtures", "models");
export const API_KEY = "test-key-5f1c0a9e77";

/** An in-process coordinator that signs and checks receipts; `{upstreamQuirks: true}` for upstream mode. */
export async function coordinatorWithReceipts(opts: LocalCoordinatorOptions = {}) {
  const key = generateKeyPair();
  const coordinator = await startLocalCoordinator({
    apiKeys: [API_KEY],
    rateLimits: { register: 10_000, heartbeat: 10_000, poll: 100_000, result: 10_000 },
    verifyReceipt: (r) => {
      const v = verifyReceipt(r as never, {});
      return v.valid ? { ok: true } : { ok: false, reason: v.reason };
    },
    signReceipt: (payload) => ({ ...payload, signature: signPayload(payload, key) }),
    ...opts,
  });
  return { coordinator, coordinatorKey: key };
}

export function minerConfig(url: string, over: Record<string, unknown> = {}): RunConfig {
  return runSchema.parse({
    coordinator: url,
    apiKey: API_KEY,
    minerId: "test-miner",
    models: modelsDir,
    threads: 1,
    gpu: "cpu",
    stateDir: mkdtempSync(join(tmpdir(), "miner-state-")),
    logLevel: "silent",
    heartbeatInterval: 1,
    requestTimeout: 5, // loopback, but 2 busy cores: slowness must not become lost answers
    jobTimeout: 60,
    gracePeriod: 5,
    ...over,
  });
}

export const fastOverrides: ComposeOverrides = {
  pollMinIntervalMs: 5,
  flushTimeoutMs: 3000,
  abortGraceMs: 3000,
  // A state that cannot be written is probed every 5 s in production; 0.5 s keeps the same steps.
  storageRecheckMs: 500,
};

export async function startMiner(cfg: RunConfig, log: Logger = silentLogger(), overrides = fastOverrides) {
  const composed = await composeMiner(cfg, log, overrides);
  const done = composed.miner.run();
  return {
    ...composed,
    done,
    async stop() {
      await composed.miner.shutdown("test over");
      const exit = await done;
      await composed.close();
      return exit;
    },
  };
}

/** A logger whose lines are kept in memory (for secret and event checks). */
export function capturingLogger(level: "debug" | "info" = "debug"): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const destination = {
    write(chunk: string) {
      lines.push(...chunk.split("\n").filter(Boolean));
      return true;
    },
  } as unknown as NodeJS.WritableStream;
  return { log: createLogger({ level, destination }), lines };
}

export function inferenceJob(i: number, extra: Record<string, unknown> = {}) {
  return {
    payload: { model: "tiny", prompt: `job number ${i} says`, max_tokens: 8, temperature: 0, ...extra },
  };
}
