// GpuHealthMonitor: one verdict per GPU (health-policy.ts) from NVML's event stream and periodic
// counter reads, with a listener per change so a later step can drain a sick card. It only
// observes: nothing here stops a worker or tells the coordinator.
import type { NvmlEvent, NvmlEventsStart } from "../../binding.js";
import type { Logger } from "../log.js";
import type { EventWatch } from "./health-events.js";
import {
  classifyXid,
  describeXid,
  evaluateHealth,
  type HealthReason,
  type HealthVerdict,
  isDrained,
  sameVerdict,
  slowdownReasons,
} from "./health-policy.js";
import type { GpuDevice, GpuInfoSource, GpuSnapshot } from "./types.js";

export type HealthListener = (uuid: string, verdict: HealthVerdict) => void;

export interface GpuHealthMonitorOptions {
  source: GpuInfoSource;
  log: Logger;
  /** Starts the event stream; default: the source's own (NVML), none for other sources. */
  watchEvents?: ((onEvent: (e: NvmlEvent) => void) => EventWatch | null) | null;
  /** Counter reads every N ms once started (default 10 000); null: only what observe() is fed. */
  intervalMs?: number | null;
  /** GPUs the operator took out of service: UUIDs, or indexes as decimal strings. */
  drained?: Iterable<string>;
  /** Xids to treat as the application's own besides the built-in ones. */
  applicationXids?: readonly number[];
  /** How long a hardware slowdown must last before it is listed (default 60 s). */
  sustainMs?: number;
  /** Wall clock (ms since epoch), for `since` and slowdown spans. */
  now?: () => number;
}

function defaultWatch(source: GpuInfoSource): GpuHealthMonitorOptions["watchEvents"] {
  const s = source as { watchEvents?: (cb: (e: NvmlEvent) => void) => EventWatch | null };
  return typeof s.watchEvents === "function" ? s.watchEvents.bind(source) : null;
}

export class GpuHealthMonitor {
  private readonly source: GpuInfoSource;
  private readonly log: Logger;
  private readonly watch: GpuHealthMonitorOptions["watchEvents"];
  private readonly intervalMs: number | null;
  private readonly appXids: readonly number[];
  private readonly sustainMs: number;
  private readonly now: () => number;
  private drained: Set<string>;
  private readonly listeners = new Set<HealthListener>();
  /** The last read of each GPU, by UUID. */
  private readonly devices = new Map<string, GpuDevice>();
  /** Sticky conditions events taught, by UUID (kept until clear(uuid) or a restart). */
  private readonly conditions = new Map<string, HealthReason[]>();
  private readonly slowdown = new Map<string, { since: number; reasons: string[] }>();
  private readonly current = new Map<string, HealthVerdict>();
  private events: EventWatch | null = null;
  private timer: NodeJS.Timeout | null = null;
  private reading: Promise<void> | null = null;
  private readFailed = false;

  constructor(opts: GpuHealthMonitorOptions) {
    this.source = opts.source;
    this.log = opts.log;
    this.watch = opts.watchEvents === undefined ? defaultWatch(opts.source) : opts.watchEvents;
    this.intervalMs = opts.intervalMs === undefined ? 10_000 : opts.intervalMs;
    this.appXids = opts.applicationXids ?? [];
    this.sustainMs = opts.sustainMs ?? 60_000;
    this.now = opts.now ?? Date.now;
    this.drained = new Set(opts.drained ?? []);
  }

  /** What the event watcher said at start (per device: registered, unsupported, ...); null without one. */
  get eventStatus(): NvmlEventsStart | null {
    return this.events?.status ?? null;
  }

  /** Subscribe to verdict changes (also the first verdict of each GPU); returns the unsubscribe. */
  onHealthChange(listener: HealthListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  verdict(uuid: string): HealthVerdict | undefined {
    return this.current.get(uuid);
  }

  verdicts(): HealthVerdict[] {
    return [...this.current.values()].sort((a, b) => a.index - b.index);
  }

  /** Starts the event stream and the periodic reads; the first read is done when this resolves. */
  async start(): Promise<void> {
    if (this.events === null && this.watch) {
      try {
        this.events = this.watch((e) => this.handleEvent(e));
      } catch (err) {
        // No event stream (NVML closed under us, another watcher in this process): counters only.
        this.log.warn(
          { event: "gpu_health_events_failed", err: (err as Error).message },
          `NVML health events unavailable: ${(err as Error).message}; counters still read`,
        );
      }
      for (const d of this.events?.status.devices ?? []) {
        if (d.status === "registered") continue;
        this.log.warn(
          {
            event: "gpu_health_events_unavailable",
            index: d.index,
            uuid: d.uuid,
            status: d.status,
            code: d.code,
          },
          `GPU ${d.index} reports no health events (${d.status}${d.message ? `: ${d.message}` : ""}); counters still read`,
        );
      }
    }
    await this.readOnce();
    if (this.intervalMs !== null && this.timer === null) {
      this.timer = setInterval(() => void this.readOnce(), this.intervalMs);
      // Watching health never keeps the process alive.
      this.timer.unref();
    }
  }

  /** Stops reads and the event thread (joined); verdicts stay readable. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.events?.stop();
    this.events = null;
    await this.reading;
  }

  /** Replaces the operator's drained list and re-evaluates every GPU. */
  setDrained(ids: Iterable<string>): void {
    this.drained = new Set(ids);
    for (const uuid of this.devices.keys()) this.evaluate(uuid);
  }

  /** Forgets what events taught about a GPU (an operator's word after a reset), re-evaluates it. */
  clear(uuid: string): void {
    this.conditions.delete(uuid);
    if (this.devices.has(uuid)) this.evaluate(uuid);
  }

  /** Feeds one snapshot (the periodic read does; telemetry and the miner may too). */
  observe(s: GpuSnapshot): HealthVerdict[] {
    const now = this.now();
    for (const d of s.devices) {
      this.devices.set(d.uuid, d);
      const slow = d.error ? [] : slowdownReasons(d);
      const prev = this.slowdown.get(d.uuid);
      if (slow.length === 0) this.slowdown.delete(d.uuid);
      else this.slowdown.set(d.uuid, { since: prev?.since ?? now, reasons: slow });
    }
    return s.devices.map((d) => this.evaluate(d.uuid));
  }

  /** One event from the stream (already validated by health-events.ts). */
  handleEvent(e: NvmlEvent): void {
    if (e.kind === "error") {
      // Which GPU (if any) is gone the next counter read tells; the stream itself goes on.
      this.log.warn(
        { event: "gpu_health_wait_failed", code: e.code },
        `waiting for NVML events failed: ${e.message} (NVML code ${e.code})`,
      );
      return;
    }
    const reason = this.reasonFor(e);
    const targets = this.targetsOf(e);
    this.log.info(
      {
        event: "gpu_health_event",
        type: e.type,
        xid: e.xid,
        index: e.index,
        uuid: e.uuid,
        effect: reason?.severity ?? "none",
      },
      e.type === "xid"
        ? `Xid ${e.xid} (${describeXid(e.xid ?? -1)}) on GPU ${e.index ?? "?"}`
        : `${e.type} on GPU ${e.index ?? "?"}`,
    );
    if (!reason) return;
    for (const uuid of targets) {
      const list = this.conditions.get(uuid) ?? [];
      if (!list.some((r) => r.code === reason.code)) list.push(reason);
      this.conditions.set(uuid, list);
      if (this.devices.has(uuid)) this.evaluate(uuid);
    }
  }

  private reasonFor(e: Extract<NvmlEvent, { kind: "event" }>): HealthReason | null {
    const since = new Date(e.timestamp).toISOString();
    if (e.type === "double_bit_ecc")
      return { code: "double_bit_ecc", severity: "sick", message: "double-bit ECC error event", since };
    if (e.type !== "xid" || e.xid === null) return null;
    const cls = classifyXid(e.xid, this.appXids);
    if (cls === "application") return null;
    return { code: `xid_${e.xid}`, severity: cls, message: `Xid ${e.xid}: ${describeXid(e.xid)}`, since };
  }

  /** The GPUs an event is about: its UUID, else its index, else (no device) all of them. */
  private targetsOf(e: Extract<NvmlEvent, { kind: "event" }>): string[] {
    if (e.uuid) return [e.uuid];
    const byIndex = [...this.devices.values()].filter((d) => d.index === e.index).map((d) => d.uuid);
    if (e.index !== null) return byIndex;
    // As NVIDIA's device plugin does: an Xid NVML cannot attribute counts against every GPU.
    return [...this.devices.keys()];
  }

  private evaluate(uuid: string): HealthVerdict {
    const device = this.devices.get(uuid);
    if (!device) throw new Error(`no read of GPU ${uuid} yet`);
    const v = evaluateHealth({
      device,
      conditions: this.conditions.get(uuid) ?? [],
      slowdown: this.slowdown.get(uuid) ?? null,
      drained: isDrained(this.drained, device),
      now: this.now(),
      sustainMs: this.sustainMs,
    });
    const before = this.current.get(uuid);
    this.current.set(uuid, v);
    if (!sameVerdict(before, v)) {
      this.log.info(
        { event: "gpu_health", index: v.index, uuid, state: v.state, reasons: v.reasons.map((r) => r.code) },
        `GPU ${v.index} is ${v.state}${v.reasons.length ? `: ${v.reasons.map((r) => r.message).join("; ")}` : ""}`,
      );
      for (const l of this.listeners) {
        try {
          l(uuid, v);
        } catch (err) {
          this.log.error(
            { event: "gpu_health_listener_failed", err: (err as Error).message },
            "health listener threw",
          );
        }
      }
    }
    return v;
  }

  private readOnce(): Promise<void> {
    // Never two reads at once: a slow driver makes the next tick wait for this one.
    if (this.reading) return this.reading;
    this.reading = (async () => {
      try {
        this.observe(await this.source.snapshot());
        this.readFailed = false;
      } catch (err) {
        if (!this.readFailed)
          this.log.warn(
            { event: "gpu_health_read_failed", err: (err as Error).message },
            `GPU health read failed; verdicts unchanged: ${(err as Error).message}`,
          );
        this.readFailed = true;
      } finally {
        this.reading = null;
      }
    })();
    return this.reading;
  }
}
