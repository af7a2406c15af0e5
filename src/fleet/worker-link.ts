// A worker's side of the IPC channel: ops events as they happen, gauges and health once a
// second, and the host's poll budget (polls asked for and granted). A worker whose supervisor is
// gone (killed, crashed) stops cleanly rather than mine on unsupervised.
import type { Logger } from "../log.js";
import type { MinerEvent } from "../ops/events.js";
import type { WorkerGauges } from "../ops/metrics.js";
import {
  type DrainMessage,
  parseDrainMessage,
  parseSupervisorMessage,
  type WorkerHealth,
  type WorkerMessage,
} from "./ipc.js";
import { SharedPollBudget } from "./shared-budget.js";

const STATUS_EVERY_MS = 1000;

export interface StatusSource {
  gauges(): Promise<WorkerGauges>;
  health(): WorkerHealth;
  shutdown(reason: string): Promise<unknown>;
  /** The supervisor drained this worker's card (a drained worker exits; undrain starts a new one). */
  drain(reason: string, failRunning: boolean): Promise<unknown>;
}

export interface SupervisorLink {
  onEvent(e: MinerEvent): void;
  attach(source: StatusSource): void;
  /** The host's poll budget, granted by the supervisor. */
  pollBudget: SharedPollBudget;
  close(): void;
}

export function linkToSupervisor(log: Logger): SupervisorLink {
  const send = (m: WorkerMessage) => {
    if (process.connected) process.send?.(m, undefined, undefined, () => undefined);
  };
  let timer: NodeJS.Timeout | null = null;
  let onDisconnect: (() => void) | null = null;
  const pollBudget = new SharedPollBudget(send);
  let source: StatusSource | null = null;
  /** A drain that came before the miner was attached (the card went bad while it started). */
  let pendingDrain: DrainMessage | null = null;
  const onMessage = (m: unknown) => {
    const grant = parseSupervisorMessage(m);
    if (grant) pollBudget.granted(grant);
    const drain = parseDrainMessage(m);
    if (drain && source) void source.drain(drain.reason, drain.failRunning);
    else if (drain) pendingDrain = drain;
  };
  process.on("message", onMessage);
  return {
    onEvent: (e) => send({ t: "event", e }),
    pollBudget,
    attach(s) {
      source = s;
      if (pendingDrain) void s.drain(pendingDrain.reason, pendingDrain.failRunning);
      const report = () => {
        s.gauges().then(
          (gauges) => send({ t: "status", gauges, health: s.health() }),
          () => undefined,
        );
      };
      report();
      timer = setInterval(report, STATUS_EVERY_MS);
      timer.unref();
      onDisconnect = () => {
        log.warn({ event: "supervisor_gone" }, "the supervisor is gone: stopping this worker");
        void s.shutdown("supervisor gone");
      };
      process.once("disconnect", onDisconnect);
    },
    close() {
      process.off("message", onMessage);
      if (timer) clearInterval(timer);
      if (onDisconnect) process.off("disconnect", onDisconnect);
      if (process.connected) process.disconnect();
    },
  };
}
