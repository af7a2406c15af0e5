// MinerDeps for tests that build a Miner directly around their own backend (a wedging one, a
// scripted one): the real client, outbox, journal and receipts, quiet logs, no GPU.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Backend } from "../../src/backends/types.js";
import { createCoordinatorClient } from "../../src/coordinator/client.js";
import { silentLogger } from "../../src/log.js";
import { ClaimJournal } from "../../src/miner/journal.js";
import type { MinerDeps, MinerSettings } from "../../src/miner/loop.js";
import { Outbox } from "../../src/miner/outbox.js";
import { buildMinerReceipt, generateKeyPair } from "../../src/receipts/index.js";
import { API_KEY } from "./harness.js";

export interface TestMinerOptions {
  url: string;
  backend: Backend;
  minerId?: string;
  concurrency?: number;
  settings?: Partial<MinerSettings>;
  stateDir?: string;
}

export function testMinerDeps(o: TestMinerOptions): MinerDeps & { stateDir: string } {
  const stateDir = o.stateDir ?? mkdtempSync(join(tmpdir(), "test-miner-"));
  const minerId = o.minerId ?? "test-miner";
  const concurrency = o.concurrency ?? 1;
  const key = generateKeyPair();
  const log = silentLogger();
  const models = () => o.backend.listModels().map((m) => m.name);
  return {
    stateDir,
    settings: {
      minerId,
      concurrency,
      heartbeatIntervalMs: 1000,
      pollsPerWindow: Number.POSITIVE_INFINITY,
      pollWindowMs: 60_000,
      idlePollIntervalMs: 5,
      longPollSeconds: 0,
      jobTimeoutMs: 30_000,
      gracePeriodMs: 1000,
      abortGraceMs: 1000,
      flushTimeoutMs: 5000,
      limits: { maxPromptChars: 10_000, maxTokens: 64, defaultMaxTokens: 8 },
      unloadAfterJob: false,
      ...o.settings,
    },
    client: createCoordinatorClient({
      protocol: "aitbc",
      baseUrl: o.url,
      apiKey: API_KEY,
      minerId,
      timeoutMs: 2000,
      log,
    }),
    backend: o.backend,
    outbox: new Outbox(join(stateDir, "outbox")),
    journal: new ClaimJournal(join(stateDir, "journal")),
    log,
    capabilities: async () => ({
      gpus: [],
      cuda: null,
      models: models(),
      platform: "CPU",
      supported_tasks: ["inference"],
      max_concurrent_jobs: concurrency,
    }),
    hostFacts: async () => ({ models: models(), gpuNames: [], maxVramGb: 0, cuda: null }),
    heartbeatMetadata: async () => ({}),
    signReceipt: (input) => buildMinerReceipt(input, key) as unknown as Record<string, unknown>,
    checkCoordinatorReceipt: () => ({ verified: null, receipt: null }),
    recordReceipt: async () => {},
  };
}
