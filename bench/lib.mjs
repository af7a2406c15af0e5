// Shared pieces of the benchmarks: statistics, host facts, the results writer, table printing,
// and every import of the compiled miner (dist/). Keeping the dist imports here means a module
// move (e.g. src/miner.ts → src/miner/loop.ts) is a one-line fix.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = (p) => import(join(root, "dist", p));

// ---- the compiled miner (the only place bench/ reaches into dist/) ------------------------
export const { Miner, Outbox, ClaimJournal, DurableStore, StateStorage, DEFAULT_MIN_FREE_BYTES } =
  await dist("miner/index.js");
export const { createCoordinatorClient } = await dist("coordinator/client.js");
export const { startLocalCoordinator } = await dist("local-coordinator/index.js");
export const { DEFAULT_RATE_LIMITS } = await dist("local-coordinator/rate-limit.js");
export const { composeMiner } = await dist("compose.js");
export const { runSchema } = await dist("config.js");
export const { createLlamaBackend } = await dist("backends/llama/index.js");
export const { createOllamaBackend } = await dist("backends/ollama.js");
export const { BENCH_PRESET, TEST_PRESET, ensureTinyModel } = await dist("backends/tiny-gguf.js");
export const { silentLogger } = await dist("log.js");
export const { createGpuInfoSource } = await dist("gpu/index.js");
export const {
  buildMinerReceipt,
  generateKeyPair,
  ReceiptLog,
  signPayload,
  verifyCoordinatorReceipt,
  verifyReceipt,
} = await dist("receipts/index.js");
/** Whether the local coordinator honours max_wait_seconds (long-poll); looked up in its source. */
export function localCoordinatorLongPolls() {
  try {
    return readFileSync(join(root, "dist", "local-coordinator", "long-poll.js"), "utf8").includes("max_wait");
  } catch {
    return false;
  }
}

// ---- command line ---------------------------------------------------------------------------
export function benchArgs(extra = {}) {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean", default: false },
      smoke: { type: "boolean", default: false },
      ...extra,
    },
    strict: false,
  });
  // --smoke (the test suite's check that a bench runs): --quick with the fewest runs that still
  // fill every table; its figures mean even less than --quick's.
  if (values.smoke) values.quick = true;
  return values;
}

// ---- statistics -----------------------------------------------------------------------------
export function quantile(values, q) {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  // Nearest rank: p99 of 100 samples is the 99th, not an interpolation past the data.
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}
export function summary(values) {
  const s = [...values].sort((a, b) => a - b);
  return {
    n: s.length,
    min: s[0],
    median: quantile(s, 0.5),
    max: s[s.length - 1],
    p50: quantile(s, 0.5),
    p99: quantile(s, 0.99),
  };
}
/** "min / median / max" with `digits` decimals. */
export function mmm(values, digits = 1) {
  const s = summary(values);
  return `${s.min.toFixed(digits)} / ${s.median.toFixed(digits)} / ${s.max.toFixed(digits)}`;
}
export function ratio(a, b, digits = 2) {
  return `${(a / b).toFixed(digits)}×`;
}

/** Seeded PRNG (the miner's own mulberry32): the same arrival gaps on every run. */
export const { seededRandom: prng } = await dist("prng.js");

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- output ---------------------------------------------------------------------------------
export function printTable(title, header, rows) {
  const all = [header, ...rows].map((r) => r.map(String));
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  const line = (r) => r.map((c, i) => c.padEnd(widths[i])).join("  ");
  const out = [title, line(all[0]), widths.map((w) => "-".repeat(w)).join("  "), ...all.slice(1).map(line)];
  process.stdout.write(`${out.join("\n")}\n`);
}

export async function hostFacts() {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const llamaPkg = JSON.parse(
    readFileSync(join(root, "node_modules", "node-llama-cpp", "package.json"), "utf8"),
  );
  const cpus = os.cpus();
  let gpu = { source: "none", devices: [] };
  try {
    const src = await createGpuInfoSource({ log: silentLogger() });
    gpu = { source: src.kind, devices: [] };
    if (src.kind !== "none") {
      const snap = await src.snapshot();
      gpu.devices = snap.devices.map((d) => ({ name: d.name, memoryTotalMiB: d.memoryTotalMiB ?? null }));
      gpu.driver = snap.driverVersion ?? null;
    }
    await src.close();
  } catch (err) {
    gpu.error = err instanceof Error ? err.message : String(err);
  }
  let commit = null;
  try {
    commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root, encoding: "utf8" }).trim();
  } catch {}
  return {
    hostname: os.hostname(),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    cpu: {
      model: cpus[0]?.model ?? "unknown",
      count: cpus.length,
      availableParallelism: os.availableParallelism(),
    },
    memoryBytes: os.totalmem(),
    loadavg: os.loadavg(),
    node: process.version,
    package: { name: pkg.name, version: pkg.version, commit },
    nodeLlamaCpp: llamaPkg.version,
    gpu,
  };
}

/** bench/results/<name>-<ISO time>.json (BENCH_RESULTS_DIR overrides the folder, for the smoke test). */
export async function writeResult(name, data, { quick = false } = {}) {
  // --quick figures mean nothing: they go to the temp directory, never among the kept results.
  const dir =
    process.env.BENCH_RESULTS_DIR ||
    (quick ? join(os.tmpdir(), "aitbc-bench-results") : join(root, "bench", "results"));
  mkdirSync(dir, { recursive: true });
  const at = new Date().toISOString();
  const file = join(dir, `${name}-${at.replace(/[:.]/g, "-")}.json`);
  const doc = { bench: name, at, quick, host: await hostFacts(), ...data };
  writeFileSync(file, `${JSON.stringify(doc, null, 2)}\n`);
  process.stdout.write(`results: ${file}\n`);
  return file;
}

// ---- fixtures -------------------------------------------------------------------------------
export const API_KEY = "bench-key-0f3a9c1d";
/** Lifted the way `demo` lifts them: one miner on loopback. */
export const LIFTED_LIMITS = { register: 1000, heartbeat: 10_000, poll: 1_000_000, result: 1_000_000 };

/** A local coordinator that checks miner receipts and signs its own. */
export async function startCoordinator(opts = {}) {
  const key = generateKeyPair();
  const coordinator = await startLocalCoordinator({
    apiKeys: [API_KEY],
    rateLimits: LIFTED_LIMITS,
    verifyReceipt: (r) => {
      const v = verifyReceipt(r, {});
      return v.valid ? { ok: true } : { ok: false, reason: v.reason };
    },
    signReceipt: (payload) => ({ ...payload, signature: signPayload(payload, key) }),
    ...opts,
  });
  return { coordinator, coordinatorKey: key };
}

/**
 * The same coordinator in a child process (bench/coordinator-child.mjs), as a remote one would be:
 * its CPU is not the loop's. Times come back on the host-wide clock (performance.timeOrigin +
 * performance.now()); `now()` reads that clock here.
 */
export async function startCoordinatorProcess(opts = {}) {
  const { fork } = await import("node:child_process");
  const child = fork(join(root, "bench", "coordinator-child.mjs"), [JSON.stringify(opts)], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const pending = new Map();
  let next = 1;
  const ready = new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`bench coordinator exited (${code})`)));
    child.on("message", (m) => {
      if (m.type === "ready") return resolve(m);
      const p = pending.get(m.id);
      if (!p) return;
      pending.delete(m.id);
      if (m.ok === false) p.reject(new Error(m.error));
      else p.resolve(m);
    });
  });
  const { url, publicKeyHex } = await ready;
  const ask = (body) =>
    new Promise((resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve, reject });
      child.send({ id, ...body });
    });
  return {
    url,
    coordinatorKey: { publicKeyHex },
    now: () => performance.timeOrigin + performance.now(),
    enqueue: async (jobs) => (await ask({ type: "enqueue", jobs })).ids,
    waitSettled: (ids, timeoutMs) => ask({ type: "wait", ids, timeoutMs }),
    times: async (ids) => (await ask({ type: "times", ids })).times,
    states: async (ids) => (await ask({ type: "state", ids })).states,
    stats: async () => (await ask({ type: "stats" })).stats,
    close: async () => {
      await ask({ type: "close" });
      await new Promise((r) => (child.exitCode !== null ? r() : child.once("exit", r)));
    },
  };
}

/** A backend that answers at once: what remains is the loop's own cost. */
export function zeroBackend(model = "zero") {
  return {
    name: "llama",
    async init() {},
    listModels: () => [{ name: model, sizeBytes: null, source: "bench" }],
    hasModel: (n) => n === model,
    async generate(req) {
      return {
        output: "ok",
        model: req.model,
        backend: "llama",
        promptTokens: 1,
        completionTokens: 1,
        durationMs: 0,
        stopReason: "maxTokens",
      };
    },
    async unloadAll() {},
    async close() {},
  };
}

/**
 * The miner as `run` composes it (durable outbox and claim journal, state-storage guard, signed
 * receipts checked both ways, receipts log), around any backend. No GPU source: the bench
 * backend needs none.
 */
/**
 * The durable store's interface over a Map, for the loop bench's "no durable state" rows: the
 * same outbox, journal and miner, with nothing written or synced. What durability costs, not a
 * way to run a miner (a crash loses every result not yet acknowledged).
 */
function memoryStore() {
  const m = new Map();
  return {
    open: async () => {},
    close: async () => {},
    fsyncCounts: () => ({ files: 0, dirs: 0 }),
    put: async (k, v) => void m.set(k, v),
    remove: async (k) => void m.delete(k),
    removeIf: async (k, test) => {
      if (test(m.get(k) ?? null)) m.delete(k);
    },
    get: async (k) => m.get(k) ?? null,
    has: async (k) => m.has(k),
    list: async () => ({ entries: [...m].map(([key, value]) => ({ key, value })), corrupt: [] }),
    count: async () => m.size,
  };
}

/** The outbox and the journal each keep their DurableStore in `store` (a private field in TS). */
function swapStore(holder, store) {
  if (!(holder.store instanceof DurableStore))
    throw new Error("bench: the outbox or journal no longer keeps its DurableStore in `store`");
  holder.store = store;
}

export function buildMiner({
  url,
  backend,
  coordinatorKey,
  concurrency = 1,
  settings = {},
  protocol = "aitbc",
  stateRoot = os.tmpdir(),
  stateInMemory = false,
}) {
  const state = mkdtempSync(join(stateRoot, "aitbc-bench-miner-"));
  const key = generateKeyPair();
  const log = silentLogger();
  const receiptLog = new ReceiptLog(join(state, "receipts.jsonl"));
  const minerId = `bench-miner-${process.pid}`;
  const models = () => backend.listModels().map((m) => m.name);
  const outbox = new Outbox(join(state, "outbox"));
  const journal = new ClaimJournal(join(state, "journal"));
  if (stateInMemory) {
    swapStore(outbox, memoryStore());
    swapStore(journal, memoryStore());
  }
  const miner = new Miner({
    settings: {
      minerId,
      concurrency,
      heartbeatIntervalMs: 15_000,
      // `run`'s defaults: the reference budget of 100 polls a minute, long-poll asked for.
      pollsPerWindow: 100,
      pollWindowMs: 60_000,
      idlePollIntervalMs: 600,
      longPollSeconds: 20,
      jobTimeoutMs: 120_000,
      gracePeriodMs: 10_000,
      abortGraceMs: 5_000,
      flushTimeoutMs: 5_000,
      limits: { maxPromptChars: 100_000, maxTokens: 4096, defaultMaxTokens: 256 },
      unloadAfterJob: false,
      ...settings,
    },
    client: createCoordinatorClient({
      protocol,
      baseUrl: url,
      apiKey: API_KEY,
      minerId,
      timeoutMs: 15_000,
      log,
    }),
    backend,
    outbox,
    storage: new StateStorage(join(state, "outbox", ".tmp"), log, DEFAULT_MIN_FREE_BYTES),
    journal,
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
    heartbeatMetadata: async () => ({ backend: backend.name }),
    signReceipt: (input) => buildMinerReceipt(input, key),
    checkCoordinatorReceipt: (text) => verifyCoordinatorReceipt(text, coordinatorKey.publicKeyHex),
    recordReceipt: (entry) => receiptLog.append({ ...entry, at: new Date().toISOString() }),
  });
  const done = miner.run();
  return {
    miner,
    state,
    /** fsyncs so far across the outbox and the claim journal. */
    fsyncs() {
      const o = outbox.fsyncCounts();
      const j = journal.fsyncCounts();
      return o.files + o.dirs + j.files + j.dirs;
    },
    async stop() {
      await miner.shutdown("bench over");
      const exit = await done;
      await receiptLog.close();
      return exit;
    },
  };
}

/** The whole miner from a RunConfig (real backend), as `run` and `demo` compose it. */
export async function composeFromConfig(cfg, overrides) {
  const composed = await composeMiner(runSchema.parse(cfg), silentLogger(), overrides);
  const done = composed.miner.run();
  return {
    ...composed,
    async stop() {
      await composed.miner.shutdown("bench over");
      await done;
      await composed.close();
    },
  };
}

/**
 * Records when each job was enqueued, handed out and acknowledged (coordinator events), and which
 * jobs have settled (completed, or failed for good). Waiting on `settled` costs a Set lookup per
 * job, where asking the coordinator clones each job: on every event, that was most of the CPU
 * a bench run spent, and it slowed whichever loop ran the longest.
 */
export function jobClock(coordinator) {
  const at = new Map();
  const settled = new Set();
  const get = (id) => {
    let e = at.get(id);
    if (!e) {
      e = {};
      at.set(id, e);
    }
    return e;
  };
  const off = coordinator.on((ev) => {
    const t = performance.now();
    if (ev.type === "enqueued") get(ev.jobId).enqueued ??= t;
    else if (ev.type === "assigned") get(ev.jobId).assigned ??= t;
    else if (ev.type === "completed") get(ev.jobId).completed ??= t;
    if (ev.type === "completed" || (ev.type === "failed" && !ev.requeued)) settled.add(ev.jobId);
  });
  return { at, settled, off };
}

/** Whether every job in `ids` has settled, by a clock started before they were enqueued. */
export const finished = (clock, ids) => ids.every((id) => clock.settled.has(id));
