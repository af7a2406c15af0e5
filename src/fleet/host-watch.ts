// What the supervisor learns about its workers, turned into answers for a person: the sliding
// window behind GET /status and `status` (src/ops/status.ts), and the alerts (src/ops/alerts.ts):
// a card drained or back, a worker crash loop, the state directory full or read-only, no job for
// a while although polls succeed, earnings stalled (results were accepted, then for a while none
// is although jobs complete), the coordinator refusing our credentials. The supervisor of a
// multi-GPU host and a one-process host (run-miner.ts) both feed one of these.
import { hostname } from "node:os";
import type { RunConfig } from "../config.js";
import type { Logger } from "../log.js";
import { ExitCode } from "../miner/exit-codes.js";
import { AlertSink } from "../ops/alerts.js";
import type { MinerEvent } from "../ops/events.js";
import type { WorkerGauges } from "../ops/metrics.js";
import { type StatusCounters, StatusWindow, statusVerdict } from "../ops/status.js";
import { registerSecret } from "../secrets.js";
import type { DrainState } from "./gpu-drain.js";
import type { WorkerHealth } from "./ipc.js";

/** Restarts within CRASH_WINDOW_MS that make a crash loop. */
const CRASH_LOOP_RESTARTS = 3;
const CRASH_WINDOW_MS = 10 * 60_000;
const CHECK_EVERY_MS = 30_000;
const DEDUPE_MS = 30 * 60_000;

/** "30 min", "1.5 min", "6 s": an alert period as the operator set it. */
const period = (ms: number) =>
  ms < 60_000 ? `${Math.round(ms / 1000)} s` : `${Number((ms / 60_000).toFixed(1))} min`;

/** The operator's alert settings (--alert-webhook, --alert-no-job-minutes, ...), in ms. */
export interface AlertSettings {
  alertWebhook?: string | undefined;
  /** No job for this long while polls succeed: alert (default 30 min). */
  noJobMs?: number;
  /** Results were accepted before, then none for this long while jobs complete: alert (default 60 min). */
  earningsStalledMs?: number;
}

export function alertSettings(
  cfg: Pick<RunConfig, "alertWebhook" | "alertNoJobMinutes" | "alertEarningsStalledMinutes">,
): AlertSettings {
  return {
    alertWebhook: cfg.alertWebhook,
    noJobMs: cfg.alertNoJobMinutes * 60_000,
    earningsStalledMs: cfg.alertEarningsStalledMinutes * 60_000,
  };
}

export interface HostWatchOptions extends AlertSettings {
  log: Logger;
  workers: { key: string; minerId: string; gpus: string }[];
  /** GET /status's window (default 10 min). */
  windowMs?: number;
  now?: () => number;
}

interface Seen {
  minerId: string;
  gpus: string;
  startedAt: number;
  stateWritable: boolean | null;
  drained: DrainState | null;
  gaveUp: number | null;
  credentialsRefused: boolean;
  lastReasons: string[];
  restarts: number[];
  /** When a result was last accepted (null: none since the start, so nothing can stall). */
  earnedAt: number | null;
}

export interface WorkerStatus extends StatusCounters {
  minerId: string;
  gpus: string;
  verdict: string;
}

export class HostWatch {
  private readonly window: StatusWindow;
  private readonly seen = new Map<string, Seen>();
  private readonly said = new Map<string, number>();
  private readonly alerts: AlertSink | null;
  private readonly timer: NodeJS.Timeout;
  private readonly now: () => number;
  private readonly noJobMs: number;
  private readonly earningsMs: number;
  /** What GET /status reports (the window keeps longer for the no-job alert). */
  private readonly reportMs: number;

  constructor(private readonly o: HostWatchOptions) {
    this.now = o.now ?? Date.now;
    this.noJobMs = o.noJobMs ?? 30 * 60_000;
    this.earningsMs = o.earningsStalledMs ?? 60 * 60_000;
    this.reportMs = o.windowMs ?? 10 * 60_000;
    this.window = new StatusWindow(Math.max(this.reportMs, this.noJobMs, this.earningsMs), this.now);
    for (const w of o.workers)
      this.seen.set(w.key, {
        minerId: w.minerId,
        gpus: w.gpus,
        startedAt: this.now(),
        stateWritable: null,
        drained: null,
        gaveUp: null,
        credentialsRefused: false,
        lastReasons: [],
        restarts: [],
        earnedAt: null,
      });
    // A Slack webhook's URL is its credential: it never reaches a log line.
    if (o.alertWebhook) registerSecret(o.alertWebhook);
    this.alerts = o.alertWebhook
      ? new AlertSink({
          url: o.alertWebhook,
          log: o.log.child({ component: "alerts" }),
          host: hostname(),
          dedupeMs: DEDUPE_MS,
        })
      : null;
    // A period shorter than the usual check (--alert-no-job-minutes 0.5) is checked 4 times in it.
    const every = Math.min(CHECK_EVERY_MS, Math.max(1000, Math.min(this.noJobMs, this.earningsMs) / 4));
    this.timer = setInterval(() => this.check(), every);
    this.timer.unref();
  }

  event(key: string, e: MinerEvent): void {
    this.window.add(key, e);
    const s = this.seen.get(key);
    if (s && e.type === "result_delivered" && e.answer === "accepted") {
      s.earnedAt = this.now();
      this.alertsForget(`earnings:${s.minerId}`); // earning again: the next stall is news
    }
  }

  status(key: string, gauges: WorkerGauges, health: WorkerHealth): void {
    const s = this.seen.get(key);
    if (!s) return;
    s.lastReasons = health.reasons;
    if (s.stateWritable !== false && !gauges.stateWritable)
      this.alert(
        `state:${s.minerId}`,
        `${s.minerId}: the state directory is full or read-only; mining is paused`,
      );
    s.stateWritable = gauges.stateWritable;
  }

  started(key: string): void {
    const s = this.seen.get(key);
    if (s) s.startedAt = this.now();
  }

  /** A worker exited: restarted (`final` false) or given up. */
  exited(key: string, code: number, final: boolean): void {
    const s = this.seen.get(key);
    if (!s) return;
    if (final) {
      s.gaveUp = code;
      s.credentialsRefused =
        code === ExitCode.badSettings && s.lastReasons.some((r) => r.includes("refused our credentials"));
      if (s.credentialsRefused)
        this.alert("credentials", `${s.minerId}: the coordinator refuses our credentials; mining stopped`);
      else if (code === ExitCode.stateUnwritable)
        this.alert(
          `state:${s.minerId}`,
          `${s.minerId}: the state directory cannot be written; mining stopped`,
        );
      return;
    }
    const now = this.now();
    s.restarts = s.restarts.filter((t) => now - t < CRASH_WINDOW_MS);
    s.restarts.push(now);
    if (s.restarts.length >= CRASH_LOOP_RESTARTS)
      this.alert(
        `crashloop:${s.minerId}`,
        `${s.minerId} is in a crash loop: ${s.restarts.length} restarts in ${CRASH_WINDOW_MS / 60_000} min (last exit ${code})`,
      );
  }

  drainChanged(key: string, state: DrainState | null): void {
    const s = this.seen.get(key);
    if (!s) return;
    const was = s.drained;
    s.drained = state;
    if (state) this.alert(`drained:${s.minerId}`, `${s.minerId}: ${state.reason}; its other work goes on`);
    else if (was) this.alert(`back:${s.minerId}`, `${s.minerId}: GPU ${s.gpus} takes jobs again`);
    // A card back may drain again soon after: that is news again.
    this.alertsForget(state ? `back:${s.minerId}` : `drained:${s.minerId}`);
  }

  /** GET /status: per worker, the window's counters and one verdict line; a host line first. */
  report(): { windowMinutes: number; verdict: string; workers: WorkerStatus[] } {
    const workers = [...this.seen.entries()].map(([key, s]) => {
      const c = this.window.counters(key, this.reportMs);
      const verdict = statusVerdict(c, {
        workers: this.seen.size,
        windowMs: this.reportMs,
        drained: s.drained?.reason ?? null,
        stateWritable: s.stateWritable,
        credentialsRefused: s.credentialsRefused,
        gaveUp: s.gaveUp,
      });
      return { minerId: s.minerId, gpus: s.gpus, ...c, verdict };
    });
    const mining = workers.filter((w) => w.verdict.startsWith("mining"));
    const verdict =
      mining.length === workers.length
        ? workers.length === 1
          ? "mining"
          : `all ${workers.length} workers mining`
        : workers
            .filter((w) => !w.verdict.startsWith("mining"))
            .map((w) => `${w.minerId}: ${w.verdict}`)
            .join("; ");
    return { windowMinutes: Math.round(this.reportMs / 60_000), verdict, workers };
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.alerts?.flush();
  }

  /** Looks for workers with no job, or no earnings, although they work (every 30 s; tests call it). */
  check(): void {
    const now = this.now();
    for (const [key, s] of this.seen) {
      if (s.drained || s.gaveUp !== null) continue;
      if (now - s.startedAt >= this.noJobMs) this.checkNoJob(key, s);
      if (s.earnedAt !== null && now - s.earnedAt > this.earningsMs) this.checkEarnings(key, s);
    }
  }

  private checkNoJob(key: string, s: Seen): void {
    const c = this.window.counters(key, this.noJobMs);
    const answered = c.polls - c.rateLimited - c.coordinatorErrors;
    if (answered > 0 && c.handouts === 0)
      this.alert(
        `nojob:${s.minerId}`,
        `${s.minerId}: no job for ${period(this.noJobMs)} although ${answered} polls were answered (the coordinator has no work for its models)`,
      );
  }

  /** Jobs complete but no result has been accepted for earningsMs, after some were (work unpaid). */
  private checkEarnings(key: string, s: Seen): void {
    const c = this.window.counters(key, this.earningsMs);
    if (c.completed === 0) return; // no work done: the no-job alert's story, not this one
    const answers = Object.entries(c.results)
      .map(([answer, n]) => `${n} ${answer}`)
      .join(", ");
    this.alert(
      `earnings:${s.minerId}`,
      `${s.minerId}: earnings stalled: no result accepted for ${period(this.earningsMs)} although ${c.completed} jobs completed (results: ${answers || "none delivered"})`,
    );
  }

  /** Said once per key per DEDUPE_MS (the webhook's sink deduplicates the same way). */
  private alert(key: string, text: string): void {
    const now = this.now();
    const last = this.said.get(key);
    if (last !== undefined && now - last < DEDUPE_MS) return;
    this.said.set(key, now);
    this.o.log.warn({ event: "alert", key }, text);
    this.alerts?.send({ key, text });
  }

  private alertsForget(key: string): void {
    this.said.delete(key);
    this.alerts?.forget(key);
  }
}
