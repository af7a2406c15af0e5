// `run` on a host with several GPUs: one worker process per GPU (or group), each a complete miner
// with CUDA_VISIBLE_DEVICES set to its card(s), its own miner id, outbox and journal, and the
// host's signing key. A worker that dies (CUDA error, OOM, SIGKILL) is started again with
// backoff and resubmits its own outbox; the others never notice. SIGTERM drains every worker
// within one budget. The supervisor serves the host's /metrics, /healthz and /readyz, and holds
// the host's poll budget: the coordinator limits polls per IP, so it grants them (poll-share.ts).
// It watches every card's health and drains a sick card's worker (gpu-drain.ts), and answers
// GET /status and sends alerts from what its workers report (host-watch.ts).
import { type ChildProcess, spawn } from "node:child_process";
import { BACKOFF, Backoff } from "../backoff.js";
import { monotonicNow } from "../clock.js";
import type { GpuInfoSource } from "../gpu/types.js";
import type { Logger } from "../log.js";
import { ExitCode } from "../miner/exit-codes.js";
import type { PollWindowSettings } from "../miner/poll-budget.js";
import { OpsMetrics, type WorkerLabels } from "../ops/metrics.js";
import { type HealthReport, type OpsServer, startOpsServer } from "../ops/server.js";
import { gpuHealthRows, watchHostHealth } from "./gpu-drain.js";
import { type AlertSettings, HostWatch } from "./host-watch.js";
import { parseWorkerMessage, WORKER_ENV, type WorkerEnv, type WorkerHealth } from "./ipc.js";
import type { WorkerSpec } from "./plan.js";
import { PollShare } from "./poll-share.js";

/** Exit codes a restart cannot fix (bad settings, unwritable state, no GPU runtime): not restarted. */
const FINAL_EXIT_CODES = new Set<number>([
  ExitCode.badSettings,
  ExitCode.stateUnwritable,
  ExitCode.gpuUnusable,
]);
/** A worker that has not reported for this long is not alive (its loop or event loop is stuck). */
const STATUS_STALE_MS = 30_000;
/** A worker up this long has recovered: its next crash starts the backoff over. */
const STABLE_AFTER_MS = 60_000;

export interface SupervisorOptions {
  workers: WorkerSpec[];
  hostStateDir: string;
  log: Logger;
  /** The CLI and the arguments each worker runs (the supervisor's own `run` arguments). */
  cliPath: string;
  args: string[];
  /** The host's GPUs, for the per-GPU metric series. */
  gpu: GpuInfoSource;
  ops: { host: string; port: number } | null;
  /** The host's poll budget, shared by every worker: the coordinator limits per client IP. */
  polls: PollWindowSettings;
  /** How long a stop may take: every worker's shutdown budget, plus a margin. */
  stopBudgetMs: number;
  restartBackoff?: { baseMs: number; capMs: number };
  /** Resolves when the supervisor should stop (a signal); the caller wires signals. */
  stop: Promise<string>;
  /** --alert-webhook and the alerts' thresholds (host-watch.ts). */
  alerts?: AlertSettings | undefined;
  /** Called with each worker's ops server-less status (tests). */
  onStatus?: (key: string, health: WorkerHealth) => void;
}

interface Worker {
  spec: WorkerSpec;
  labels: WorkerLabels;
  child: ChildProcess | null;
  backoff: Backoff;
  startedAt: number;
  lastStatusAt: number;
  health: WorkerHealth | null;
  final: number | null;
  exited: Promise<number>;
  /** Told to drain: its exit is expected, not a crash. */
  drainSent: boolean;
}

export function workerLabels(spec: Pick<WorkerSpec, "indexes" | "uuids" | "minerId">): WorkerLabels {
  return {
    gpu: spec.indexes.length > 0 ? spec.indexes.join(",") : "cpu",
    uuid: spec.uuids.join(","),
    miner_id: spec.minerId,
  };
}

export async function runSupervisor(o: SupervisorOptions): Promise<number> {
  const log = o.log.child({ component: "supervisor" });
  const metrics = new OpsMetrics();
  const polls = new PollShare(o.polls, log);
  let stopping = false;
  const workers = o.workers.map<Worker>((spec) => {
    const labels = workerLabels(spec);
    metrics.addWorker(spec.key, labels);
    return {
      spec,
      labels,
      child: null,
      backoff: new Backoff(o.restartBackoff ?? BACKOFF.workerRestart),
      startedAt: 0,
      lastStatusAt: 0,
      health: null,
      final: null,
      exited: Promise.resolve(0),
      drainSent: false,
    };
  });
  const watch = new HostWatch({
    log,
    ...o.alerts,
    workers: workers.map((w) => ({ key: w.spec.key, minerId: w.spec.minerId, gpus: w.labels.gpu })),
  });
  const hostHealth = await watchHostHealth(
    o.gpu,
    workers.map((w) => ({ ...w.spec })),
    log,
    (key, state) => {
      const w = workers.find((x) => x.spec.key === key)!;
      watch.drainChanged(key, state);
      if (state) {
        log.warn(
          { event: "gpu_drained", worker: w.spec.minerId, by: state.by },
          `${w.spec.minerId}: ${state.reason}`,
        );
        if (w.child?.connected) {
          w.drainSent = true;
          w.child.send({ t: "drain", reason: state.reason, failRunning: state.failRunning }, () => undefined);
        }
      } else {
        log.info({ event: "gpu_undrained", worker: w.spec.minerId }, `${w.spec.minerId} takes jobs again`);
        if (!w.child && !stopping && w.final === null) start(w);
      }
    },
    { stateDir: o.hostStateDir },
  );

  const start = (w: Worker): void => {
    const env: WorkerEnv = {
      key: w.spec.key,
      minerId: w.spec.minerId,
      stateDir: w.spec.stateDir,
      hostStateDir: o.hostStateDir,
      uuids: w.spec.uuids,
    };
    const child = spawn(process.execPath, [o.cliPath, ...o.args], {
      env: {
        ...process.env,
        [WORKER_ENV]: JSON.stringify(env),
        CUDA_VISIBLE_DEVICES: w.spec.uuids.join(","),
      },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      // Its own process group: a terminal's Ctrl-C reaches the supervisor only, which then stops
      // each worker once (a second signal would make a worker exit at once).
      detached: true,
    });
    w.child = child;
    // Monotonic: a wall-clock step forward must not make every worker's status look stale.
    w.startedAt = monotonicNow();
    w.lastStatusAt = w.startedAt;
    w.health = null;
    watch.started(w.spec.key);
    log.info(
      { event: "worker_started", worker: w.spec.minerId, gpus: w.spec.indexes, pid: child.pid },
      "worker started",
    );
    child.on("message", (m: unknown) => {
      const msg = parseWorkerMessage(m);
      if (!msg) return;
      if (msg.t === "event") {
        metrics.observe(w.spec.key, msg.e);
        watch.event(w.spec.key, msg.e);
        if (msg.e.type === "poll" && msg.e.result === "job") polls.won(w.spec.minerId);
      } else if (msg.t !== "status") {
        polls.handle(w.spec.minerId, msg, (g) => {
          if (child.connected) child.send(g, undefined, undefined, () => undefined);
        });
      } else {
        w.lastStatusAt = monotonicNow();
        w.health = msg.health;
        metrics.setGauges(w.spec.key, msg.gauges);
        watch.status(w.spec.key, msg.gauges, msg.health);
        o.onStatus?.(w.spec.key, msg.health);
      }
    });
    w.exited = new Promise<number>((resolve) => {
      child.once("exit", (code, signal) => {
        w.child = null;
        polls.forget(w.spec.minerId);
        const exitCode = code ?? 128;
        const drainedExit = w.drainSent;
        w.drainSent = false;
        if (stopping) return resolve(exitCode);
        // Drained: not restarted; undrained while it stopped: started again now.
        if (drainedExit || hostHealth.drain.state(w.spec.key)) {
          if (!hostHealth.drain.state(w.spec.key) && w.final === null) start(w);
          return resolve(exitCode);
        }
        if (FINAL_EXIT_CODES.has(exitCode)) {
          w.final = exitCode;
          log.error(
            { event: "worker_gave_up", worker: w.spec.minerId, exitCode },
            `worker ${w.spec.minerId} exited ${exitCode} (settings, state directory or GPU runtime): not restarted; see its log above`,
          );
          watch.exited(w.spec.key, exitCode, true);
          resolve(exitCode);
          checkAllFinal();
          return;
        }
        if (monotonicNow() - w.startedAt > STABLE_AFTER_MS) w.backoff.reset();
        const delay = Math.max(200, w.backoff.next());
        metrics.workerRestarted(w.spec.key);
        watch.exited(w.spec.key, exitCode, false);
        log.warn(
          { event: "worker_died", worker: w.spec.minerId, exitCode: code, signal, restartInMs: delay },
          `worker ${w.spec.minerId} died (${signal ?? `exit ${code}`}); restarting it, its outbox is resubmitted`,
        );
        const timer = setTimeout(() => {
          if (!stopping && !hostHealth.drain.state(w.spec.key)) start(w);
          resolve(exitCode);
        }, delay);
        timer.unref();
      });
    });
  };

  let allFinal: (code: number) => void = () => {};
  const gaveUp = new Promise<number>((resolve) => {
    allFinal = resolve;
  });
  const checkAllFinal = () => {
    if (workers.every((w) => w.final !== null)) allFinal(workers[0]!.final!);
  };

  const health = (): HealthReport => {
    const now = monotonicNow();
    const per: Record<string, WorkerHealth> = {};
    const reasons: string[] = [];
    let live = true;
    let ready = !stopping;
    for (const w of workers) {
      let h: WorkerHealth;
      const drained = hostHealth.drain.state(w.spec.key);
      // A drained card's worker is gone on purpose: the host's other cards still make it ready.
      if (drained) h = { live: true, ready: true, reasons: [drained.reason] };
      else if (w.final !== null) h = { live: true, ready: false, reasons: [`gave up (exit ${w.final})`] };
      else if (!w.child) h = { live: true, ready: false, reasons: ["restarting"] };
      else if (now - w.lastStatusAt > STATUS_STALE_MS)
        h = {
          live: false,
          ready: false,
          reasons: [`no status for ${Math.round((now - w.lastStatusAt) / 1000)} s`],
        };
      else h = w.health ?? { live: true, ready: false, reasons: ["starting"] };
      per[w.spec.minerId] = h;
      live &&= h.live;
      ready &&= h.ready;
      for (const r of h.reasons) reasons.push(`${w.spec.minerId}: ${r}`);
    }
    const gone = hostHealth.drain.drained();
    if (gone.length === workers.length) ready = false; // every card drained: nothing mines
    const drained = Object.fromEntries(gone.map((d) => [d.minerId, d.state.reason]));
    return { live, ready, reasons, workers: per, drained };
  };

  let server: OpsServer | null = null;
  if (o.ops) {
    server = await startOpsServer(o.ops.host, o.ops.port, {
      contentType: metrics.contentType,
      health,
      status: () => watch.report(),
      control: (action, id) => hostHealth.drain.command(action, id),
      metrics: async () => {
        metrics.setGpuHealth(gpuHealthRows(hostHealth.drain.verdicts()));
        metrics.setSnapshot(await o.gpu.snapshot().catch(() => null));
        return metrics.metrics();
      },
    });
    log.info({ event: "ops_server", url: server.url }, `metrics and health on ${server.url}`);
  }

  await hostHealth.started;
  for (const w of workers) if (!hostHealth.drain.state(w.spec.key)) start(w);
  const reason = await Promise.race([o.stop, gaveUp.then((c) => `every worker gave up (exit ${c})`)]);
  stopping = true;
  log.info({ event: "shutdown", reason, workers: workers.length }, "stopping every worker");
  for (const w of workers) w.child?.kill("SIGTERM");
  const running = workers.filter((w) => w.child !== null || w.final === null);
  const drained = await Promise.race([
    Promise.all(running.map((w) => (w.child ? w.exited : Promise.resolve(0)))).then((codes) => ({ codes })),
    new Promise<null>((r) => setTimeout(() => r(null), o.stopBudgetMs).unref()),
  ]);
  let code = 0;
  if (drained === null) {
    for (const w of workers) w.child?.kill("SIGKILL");
    log.error(
      { event: "stop_budget_exceeded", budgetMs: o.stopBudgetMs },
      "workers outlived the stop budget: killed",
    );
    code = 1;
  } else {
    code = drained.codes.find((c) => c !== 0) ?? 0;
  }
  const finals = workers.filter((w) => w.final !== null).map((w) => w.final!);
  if (finals.length === workers.length) code = finals[0]!;
  await server?.close();
  await hostHealth.stop();
  await watch.close();
  await o.gpu.close().catch(() => undefined);
  log.info({ event: "stopped", exitCode: code }, "supervisor stopped");
  return code;
}
