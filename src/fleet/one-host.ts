// A one-process host (one GPU, or --gpus none) watches itself the way a supervisor watches its
// workers, with the same parts: HostWatch for GET /status and the alerts (state directory full or
// read-only, no job, earnings stalled, credentials refused, its card drained or back), and, when it
// has a card, the same health watch and HostDrain (gpu-drain.ts), whose drain stops its miner (jobs
// the card cannot finish fail with gpu_unavailable, it deregisters) until the card is undrained;
// then run-miner.ts composes a new miner, which registers anew.
import type { RunConfig } from "../config.js";
import type { GpuInfoSource } from "../gpu/types.js";
import type { Logger } from "../log.js";
import type { WorkerGauges } from "../ops/metrics.js";
import type { DrainControl, HealthReport } from "../ops/server.js";
import {
  type DrainState,
  type DrainTarget,
  gpuHealthRows,
  type HostHealth,
  watchHostHealth,
} from "./gpu-drain.js";
import { alertSettings, HostWatch } from "./host-watch.js";
import type { WorkerHealth } from "./ipc.js";

/** How often the miner's gauges and health reach the watch (a supervisor's workers: every 1 s). */
const STATUS_EVERY_MS = 5000;

/** What the watch needs of the miner that runs now. */
export interface WatchedMiner {
  gauges(): Promise<WorkerGauges>;
  health(): WorkerHealth;
  drain(reason: string, failRunning: boolean): Promise<unknown>;
}

export interface OneHostOptions {
  cfg: Pick<
    RunConfig,
    "alertWebhook" | "alertNoJobMinutes" | "alertEarningsStalledMinutes" | "minerId" | "stateDir"
  >;
  log: Logger;
  key: string;
  /** The GPU label ("0", "cpu"). */
  gpus: string;
  /** This host's card(s) and an NVML source to watch them on (null: no card to drain). */
  cards: { source: GpuInfoSource; target: Omit<DrainTarget, "key"> } | null;
}

export class OneHost {
  readonly watch: HostWatch;
  private health: HostHealth | null = null;
  private miner: WatchedMiner | null = null;
  private timer: NodeJS.Timeout | null = null;
  private waiters: (() => void)[] = [];
  /** The running miner was told to drain: its exit is expected, and an undrain brings another. */
  private drainSent = false;

  private constructor(private readonly o: OneHostOptions) {
    this.watch = new HostWatch({
      log: o.log,
      ...alertSettings(o.cfg),
      workers: [{ key: o.key, minerId: o.cfg.minerId, gpus: o.gpus }],
    });
  }

  /** Throws DrainFileError when the operator's kept drains cannot be read. */
  static async start(o: OneHostOptions): Promise<OneHost> {
    const h = new OneHost(o);
    if (o.cards) {
      try {
        h.health = await watchHostHealth(
          o.cards.source,
          [{ ...o.cards.target, key: o.key }],
          o.log,
          (_, state) => h.changed(state),
          { stateDir: o.cfg.stateDir },
        );
      } catch (err) {
        await h.close();
        throw err;
      }
      await h.health.started;
    }
    return h;
  }

  /** Why this host's card is out of service, or null. */
  drained(): DrainState | null {
    return this.health?.drain.state(this.o.key) ?? null;
  }

  /** The miner that runs now: its status reaches the watch; a drain already in force stops it. */
  attach(miner: WatchedMiner): void {
    this.miner = miner;
    const report = () => void this.report();
    this.timer = setInterval(report, STATUS_EVERY_MS);
    this.timer.unref();
    this.drainSent = false;
    const d = this.drained();
    if (d) this.drainMiner(d);
  }

  /**
   * The miner stopped with `code`: a last status; true when it stopped for a drain (a new one
   * follows the undrain, which may already have come), else an alert when it gave up for good.
   */
  async detach(code: number): Promise<boolean> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.report();
    this.miner = null;
    const forDrain = this.drainSent;
    this.drainSent = false;
    if (!forDrain && code !== 0) this.watch.exited(this.o.key, code, true);
    return forDrain;
  }

  /** Resolves once the card takes jobs again, or `stop` resolves. */
  async untilUndrained(stop: Promise<unknown>): Promise<void> {
    if (!this.drained()) return;
    // Nothing else may hold the event loop now (the miner is gone, the health watch's timer is
    // unref'd, the ops port may be off): without this the process would end with exit 0.
    const keepAlive = setInterval(() => undefined, 60_000);
    try {
      await Promise.race([stop, new Promise<void>((r) => this.waiters.push(r))]);
    } finally {
      clearInterval(keepAlive);
    }
  }

  /** /healthz and /readyz: the miner's answer, or why there is none (drained, starting). */
  readiness(miner: WorkerHealth | null): HealthReport {
    const d = this.drained();
    if (!d) return miner ?? { live: true, ready: false, reasons: ["starting"] };
    // Drained: nothing mines here, so not ready; alive (it waits for the undrain).
    return { live: true, ready: false, reasons: [d.reason], drained: { [this.o.cfg.minerId]: d.reason } };
  }

  /** POST /drain/ID and /undrain/ID, where this host has a card. */
  get control(): DrainControl | undefined {
    const health = this.health;
    return health ? (action, id) => health.drain.command(action, id) : undefined;
  }

  gpuHealth(): ReturnType<typeof gpuHealthRows> {
    return this.health ? gpuHealthRows(this.health.drain.verdicts()) : [];
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.health?.stop();
    await this.o.cards?.source.close().catch(() => undefined);
    await this.watch.close();
  }

  private drainMiner(d: DrainState): void {
    if (!this.miner) return;
    this.drainSent = true;
    void this.miner.drain(d.reason, d.failRunning);
  }

  private async report(): Promise<void> {
    const m = this.miner;
    if (!m) return;
    const gauges = await m.gauges().catch(() => null);
    if (gauges) this.watch.status(this.o.key, gauges, m.health());
  }

  private changed(state: DrainState | null): void {
    this.watch.drainChanged(this.o.key, state);
    if (state) {
      this.o.log.warn({ event: "gpu_drained", by: state.by }, `${this.o.cfg.minerId}: ${state.reason}`);
      this.drainMiner(state);
      return;
    }
    this.o.log.info({ event: "gpu_undrained" }, `${this.o.cfg.minerId} takes jobs again`);
    for (const w of this.waiters.splice(0)) w();
  }
}
