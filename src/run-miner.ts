// What `run` does with a resolved config: check the state directory, decide from the host's GPUs
// whether this is one miner (a CPU host, one GPU, --gpus none: today's single process) or a
// supervisor of one worker per GPU, and run it until a signal. Exit codes: docs/operations.md.
import { join } from "node:path";
import { composeMiner } from "./compose.js";
import type { RunConfig } from "./config.js";
import { HostWatch } from "./fleet/host-watch.js";
import { readWorkerEnv, type WorkerEnv } from "./fleet/ipc.js";
import { FleetPlanError, planWorkers, type WorkerSpec } from "./fleet/plan.js";
import { runSupervisor, workerLabels } from "./fleet/supervisor.js";
import { linkToSupervisor, type SupervisorLink } from "./fleet/worker-link.js";
import { createGpuInfoSource } from "./gpu/index.js";
import type { GpuInfoSource } from "./gpu/types.js";
import type { Logger } from "./log.js";
import { ExitCode } from "./miner/exit-codes.js";
import { runShutdownBudgetMs } from "./miner/loop.js";
import { pollSettings, pollWindowSettings } from "./miner/poll-settings.js";
import { isStorageError, StateStorage, StateStorageError } from "./miner/state-storage.js";
import { OpsMetrics } from "./ops/metrics.js";
import { type OpsServer, startOpsServer } from "./ops/server.js";
import { loadOrCreateKey } from "./receipts/index.js";
import { lockStateDir } from "./state-lock.js";
import { packageRoot } from "./version.js";

export async function runMiner(
  cfg: RunConfig,
  log: Logger,
  args: string[] = process.argv.slice(2),
): Promise<number> {
  const worker = readWorkerEnv();
  if (worker)
    return runOne(
      { ...cfg, minerId: worker.minerId, stateDir: worker.stateDir, metricsPort: undefined },
      log.child({ worker: worker.minerId }),
      { worker },
    );
  if (!(await stateDirUsable(cfg.stateDir, log))) return ExitCode.stateUnwritable;
  const lock = holdStateDir(cfg.stateDir, log);
  if (lock === null) return ExitCode.stateLocked;
  try {
    return await runHost(cfg, log, args);
  } finally {
    lock.release();
  }
}

/** One miner for the whole host, one for some of its cards, or a supervisor of one per card. */
async function runHost(cfg: RunConfig, log: Logger, args: string[]): Promise<number> {
  let workers: WorkerSpec[];
  let gpu: GpuInfoSource | null = null;
  try {
    gpu = cfg.gpus === "none" ? null : await createGpuInfoSource({ nvmlLibrary: cfg.nvmlLibrary, log });
    const devices = gpu ? ((await gpu.snapshot().catch(() => null))?.devices ?? []) : [];
    workers = planWorkers(
      {
        gpus: cfg.gpus,
        gpuGroups: cfg.gpuGroups,
        minerId: cfg.minerId,
        minerIdTemplate: cfg.minerIdTemplate,
        stateDir: cfg.stateDir,
      },
      devices,
    );
    // One worker for some of the cards: restrict this process to them, as a worker would be.
    if (workers.length === 1 && workers[0]!.uuids.length < devices.length) {
      process.env["CUDA_VISIBLE_DEVICES"] = workers[0]!.uuids.join(",");
      const only = workers[0]!;
      await gpu?.close();
      return await runOne(cfg, log, { gpuUuids: only.uuids, labels: workerLabels(only) });
    }
  } catch (err) {
    await gpu?.close();
    if (err instanceof FleetPlanError) {
      log.fatal({ event: "bad_gpu_selection" }, err.message);
      return 2;
    }
    throw err;
  }
  if (workers.length <= 1) {
    const labels = workers[0]
      ? workerLabels(workers[0])
      : workerLabels({ indexes: [], uuids: [], minerId: cfg.minerId });
    await gpu?.close();
    return runOne(cfg, log, { labels });
  }

  // Several workers: the host's key first, so they all sign with it and none races to create it.
  await loadOrCreateKey(cfg.stateDir, log);
  log.info(
    { event: "fleet", workers: workers.map((w) => ({ minerId: w.minerId, gpus: w.indexes })) },
    `one worker per GPU: ${workers.length} workers`,
  );
  const stop = new Promise<string>((resolve) => {
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        // Workers run in their own process groups and stop by themselves when this supervisor is
        // gone (their IPC channel closes); their outboxes are already on disk.
        log.warn(
          { event: "forced_exit", signal: sig },
          "second signal: the supervisor exits now; workers stop on their own",
        );
        process.exit(ExitCode.secondSignal);
      }
      resolve(sig);
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
  return runSupervisor({
    workers,
    hostStateDir: cfg.stateDir,
    log,
    cliPath: join(packageRoot, "bin", "aitbc-native-miner.js"),
    args,
    gpu: gpu!,
    ops: cfg.metricsPort === undefined ? null : { host: cfg.metricsHost, port: cfg.metricsPort },
    stopBudgetMs: runShutdownBudgetMs(cfg.gracePeriod) + 5000,
    polls: pollWindowSettings(pollSettings(cfg)),
    alertWebhook: cfg.alertWebhook,
    stop,
  });
}

/**
 * Take the state directory's lock for the life of this process; null (after saying why, once) when
 * another process holds it. Without the addon the miner runs unlocked, with a warning.
 */
function holdStateDir(dir: string, log: Logger): { release(): void } | null {
  const lock = lockStateDir(dir);
  if (lock === null) {
    log.warn(
      { event: "state_dir_unlocked", dir },
      "the NVML addon is not loadable, so the state directory cannot be locked: make sure no other miner uses it",
    );
    return { release() {} };
  }
  if (lock.ok) return lock;
  log.fatal({ event: "state_dir_locked", dir, holderPid: lock.holderPid, lock: lock.path }, lock.message);
  return null;
}

async function stateDirUsable(dir: string, log: Logger): Promise<boolean> {
  try {
    // Before anything is written there (the signing key first): a directory that can never be
    // written stops the miner with advice; a full one only pauses mining once it runs.
    await new StateStorage(dir, log, 0).checkAtStart();
    return true;
  } catch (err) {
    if (!(err instanceof StateStorageError)) throw err;
    log.fatal({ event: "state_unwritable", dir }, err.message);
    return false;
  }
}

interface OneOptions {
  worker?: WorkerEnv;
  gpuUuids?: readonly string[];
  labels?: ReturnType<typeof workerLabels>;
}

/** One miner in this process: the whole host, one GPU of it, or a supervisor's worker. */
async function runOne(cfg: RunConfig, log: Logger, o: OneOptions): Promise<number> {
  if (o.worker && !(await stateDirUsable(cfg.stateDir, log))) return ExitCode.stateUnwritable;
  // A worker owns its own directory; the host's is held by the supervisor that started it.
  const lock = o.worker ? holdStateDir(cfg.stateDir, log) : { release() {} };
  if (lock === null) return ExitCode.stateLocked;
  try {
    return await runLocked(cfg, log, o);
  } finally {
    lock.release();
  }
}

async function runLocked(cfg: RunConfig, log: Logger, o: OneOptions): Promise<number> {
  const link: SupervisorLink | null = o.worker ? linkToSupervisor(log) : null;
  const ops = cfg.metricsPort !== undefined ? new OpsMetrics() : null;
  const key = "main";
  const labels = o.labels ?? workerLabels({ indexes: [], uuids: [], minerId: cfg.minerId });
  ops?.addWorker(key, labels);
  // One miner for the host: GET /status from its own events (a worker's go to its supervisor).
  const watch = ops
    ? new HostWatch({ log, workers: [{ key, minerId: cfg.minerId, gpus: labels.gpu }] })
    : null;
  if (cfg.alertWebhook && !o.worker)
    log.warn(
      { event: "alert_webhook_unused" },
      "--alert-webhook is for a multi-GPU host (one worker per GPU under a supervisor): no alerts are sent from this miner",
    );
  let composed: Awaited<ReturnType<typeof composeMiner>>;
  try {
    composed = await composeMiner(cfg, log, {
      onEvent: (e) => {
        link?.onEvent(e);
        ops?.observe(key, e);
        watch?.event(key, e);
      },
      pollBudget: link?.pollBudget,
      ...(o.worker || o.gpuUuids
        ? {
            worker: {
              keyStateDir: o.worker?.hostStateDir ?? cfg.stateDir,
              gpuUuids: o.worker?.uuids ?? o.gpuUuids ?? null,
            },
          }
        : {}),
    });
  } catch (err) {
    link?.close();
    // e.g. the signing key cannot be created: without it no result can be signed.
    if (!isStorageError(err)) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    log.fatal(
      { event: "state_unwritable", dir: cfg.stateDir, code },
      `the state directory ${cfg.stateDir} cannot be written (${code}): free space, fix its permissions or choose another with --state-dir`,
    );
    return ExitCode.stateUnwritable;
  }
  if (!composed.compute.ok) {
    // Mining now would pose as a GPU miner (or compute nowhere): say what is missing, and stop.
    log.fatal({ event: "gpu_unusable", code: composed.compute.code }, composed.compute.message);
    link?.close();
    await composed.close();
    await composed.backend.close().catch(() => undefined);
    return ExitCode.gpuUnusable;
  }
  const miner = composed.miner;
  link?.attach({
    gauges: () => miner.gauges(),
    health: () => miner.health(),
    shutdown: (r) => miner.shutdown(r),
    drain: (r, failRunning) => miner.drain(r, failRunning),
  });
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      // A second signal: the operator wants out now. The outbox is already on disk.
      log.warn({ event: "forced_exit", signal: sig }, "second signal: exiting at once");
      process.exit(ExitCode.secondSignal);
    }
    log.info(
      { event: "signal", signal: sig },
      `received ${sig}: finishing in-flight jobs (send again to exit at once)`,
    );
    void miner.shutdown(sig);
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  let server: OpsServer | null = null;
  if (ops && cfg.metricsPort !== undefined) {
    server = await startOpsServer(cfg.metricsHost, cfg.metricsPort, {
      contentType: ops.contentType,
      health: () => miner.health(),
      status: async () => {
        watch?.status(key, await miner.gauges(), miner.health());
        return watch?.report();
      },
      metrics: async () => {
        ops.setGauges(key, await miner.gauges());
        ops.setSnapshot(await composed.gpu.snapshot().catch(() => null));
        return ops.metrics();
      },
    });
    log.info({ event: "ops_server", url: server.url }, `metrics and health on ${server.url}`);
  }
  try {
    const exit = await miner.run();
    if (exit.code !== 0) log.error({ event: "exit", code: exit.code, reason: exit.reason }, exit.reason);
    // A wedged backend may hold native work that never ends: do not wait for it to let go.
    if (exit.code === ExitCode.wedged) setTimeout(() => process.exit(ExitCode.wedged), 500).unref();
    return exit.code;
  } finally {
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
    link?.close();
    await server?.close();
    await watch?.close();
    await composed.close();
  }
}
