// What `run` does with a resolved config: check the state directory, decide from the host's GPUs
// whether this is one miner (a CPU host, one GPU, --gpus none: today's single process) or a
// supervisor of one worker per GPU, and run it until a signal. A one-process host watches itself
// (fleet/one-host.ts): alerts, GET /status, and its card's drain, which stops the miner until the
// card is undrained, then starts a new one. Exit codes: docs/operations.md.
import { join } from "node:path";
import { type Composed, type ComposeOverrides, composeMiner } from "./compose.js";
import type { RunConfig } from "./config.js";
import { DrainFileError } from "./fleet/drain-file.js";
import { alertSettings, HostWatch } from "./fleet/host-watch.js";
import { readWorkerEnv, type WorkerEnv } from "./fleet/ipc.js";
import { OneHost } from "./fleet/one-host.js";
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
  if (!(await stateDirUsable(cfg.stateDir, log)))
    return await alertGaveUp(cfg, log, ExitCode.stateUnwritable);
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
      const cards = gpu ? { source: gpu, target: only } : null;
      gpu = null; // the one-process host's health watch owns it now
      return await runOne(cfg, log, { gpuUuids: only.uuids, labels: workerLabels(only), cards });
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
    const only = workers[0];
    const labels = only ? workerLabels(only) : workerLabels({ indexes: [], uuids: [], minerId: cfg.minerId });
    // Its card's health is watched on this source (drains); a CPU host has none to watch.
    const cards = gpu && only && only.uuids.length > 0 ? { source: gpu, target: only } : null;
    if (!cards) await gpu?.close();
    return runOne(cfg, log, { labels, cards });
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
    alerts: alertSettings(cfg),
    stop,
  }).catch((err: unknown) => drainFileFatal(err, log));
}

/** The host stops before anything watches it: the same alert a watch would send (then the code). */
async function alertGaveUp(cfg: RunConfig, log: Logger, code: number): Promise<number> {
  const watch = new HostWatch({
    log,
    ...alertSettings(cfg),
    workers: [{ key: "host", minerId: cfg.minerId, gpus: "" }],
  });
  watch.exited("host", code, true);
  await watch.close();
  return code;
}

/** A bad file of the operator's drains stops the host with a line naming it (exit 2). */
function drainFileFatal(err: unknown, log: Logger): number {
  if (!(err instanceof DrainFileError)) throw err;
  log.fatal({ event: "gpu_drains_unreadable" }, err.message);
  return ExitCode.badSettings;
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
  /** A one-process host's card(s), for its health watch and drain (the source is handed over). */
  cards?: { source: GpuInfoSource; target: WorkerSpec } | null;
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
  // A worker's status, alerts and drains are its supervisor's; a one-process host watches itself.
  let host: OneHost | null = null;
  if (!o.worker) {
    try {
      host = await OneHost.start({ cfg, log, key, gpus: labels.gpu, cards: o.cards ?? null });
    } catch (err) {
      link?.close();
      return drainFileFatal(err, log);
    }
  }
  let current: Composed | null = null;
  let stopped: string | null = null;
  let onStop: () => void = () => {};
  const stop = new Promise<void>((resolve) => {
    onStop = resolve;
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
    stopped = sig;
    onStop();
    void current?.miner.shutdown(sig);
  };
  let listening = false;
  /** Signals are ours once a miner exists (or a drained card waits): until then they end the process. */
  const listen = () => {
    if (listening) return;
    listening = true;
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  };
  let server: OpsServer | null = null;
  const serve = async (): Promise<void> => {
    if (server || !ops || cfg.metricsPort === undefined) return;
    server = await startOpsServer(cfg.metricsHost, cfg.metricsPort, {
      contentType: ops.contentType,
      health: () => {
        const h = current?.miner.health() ?? null;
        return host ? host.readiness(h) : (h ?? { live: true, ready: false, reasons: ["starting"] });
      },
      status: async () => {
        if (current && host) host.watch.status(key, await current.miner.gauges(), current.miner.health());
        return host?.watch.report();
      },
      ...(host?.control ? { control: host.control } : {}),
      metrics: async () => {
        if (current) ops.setGauges(key, await current.miner.gauges());
        if (host) ops.setGpuHealth(host.gpuHealth());
        const gpu = current?.gpu ?? o.cards?.source;
        ops.setSnapshot((await gpu?.snapshot().catch(() => null)) ?? null);
        return ops.metrics();
      },
    });
    log.info({ event: "ops_server", url: server.url }, `metrics and health on ${server.url}`);
  };
  try {
    for (;;) {
      if (host?.drained()) {
        // Nothing mines until the card is undrained: /readyz says why, `gpu undrain` reaches here.
        await serve();
        listen();
        log.info({ event: "waiting_for_undrain" }, "the GPU is drained: waiting for it to be undrained");
        await host.untilUndrained(stop);
      }
      if (stopped !== null) return 0;
      const composed = await composeOne(cfg, log, o, {
        onEvent: (e) => {
          link?.onEvent(e);
          ops?.observe(key, e);
          host?.watch.event(key, e);
        },
        pollBudget: link?.pollBudget,
      });
      if (typeof composed === "number") {
        await host?.detach(composed);
        return composed;
      }
      current = composed;
      const miner = composed.miner;
      link?.attach({
        gauges: () => miner.gauges(),
        health: () => miner.health(),
        shutdown: (r) => miner.shutdown(r),
        drain: (r, failRunning) => miner.drain(r, failRunning),
      });
      listen();
      await serve();
      host?.attach({
        gauges: () => miner.gauges(),
        health: () => miner.health(),
        drain: (r, failRunning) => miner.drain(r, failRunning),
      });
      let exit: Awaited<ReturnType<typeof miner.run>>;
      try {
        const running = miner.run();
        if (stopped !== null) void miner.shutdown(stopped); // a signal while it was composed
        exit = await running;
      } finally {
        current = null;
      }
      // Stopped for a drain (not a signal): after the undrain, a new miner registers anew.
      const drained = (await host?.detach(exit.code)) === true && stopped === null;
      await composed.close();
      // A wedged backend may hold native work that never ends: do not wait for it to let go.
      if (exit.code === ExitCode.wedged) setTimeout(() => process.exit(ExitCode.wedged), 500).unref();
      else if (drained) continue;
      if (exit.code !== 0) log.error({ event: "exit", code: exit.code, reason: exit.reason }, exit.reason);
      return exit.code;
    }
  } finally {
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
    link?.close();
    // Set inside serve(): TypeScript cannot see that from here.
    await (server as OpsServer | null)?.close();
    await host?.close();
  }
}

/** A miner for this process, or the exit code that says why there is none. */
async function composeOne(
  cfg: RunConfig,
  log: Logger,
  o: OneOptions,
  over: Pick<ComposeOverrides, "onEvent" | "pollBudget">,
): Promise<Composed | number> {
  let composed: Composed;
  try {
    composed = await composeMiner(cfg, log, {
      ...over,
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
    await composed.close();
    await composed.backend.close().catch(() => undefined);
    return ExitCode.gpuUnusable;
  }
  return composed;
}
