// Prometheus metrics for ops tooling, through prom-client (the ecosystem's library): the miner's
// jobs, polls and durable state per worker (labels gpu, UUID, miner_id), and each GPU's NVML
// snapshot under DCGM-exporter's names where they overlap. Counters and histograms move on
// events (so a worker's restart never resets them); gauges are read at scrape time.
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { z } from "zod";
import { registerGpuMetrics } from "../gpu/gpu-metrics.js";
import { toTelemetryJson } from "../gpu/telemetry-format.js";
import type { GpuSnapshot } from "../gpu/types.js";
import type { MinerEvent } from "./events.js";

/** Which worker a series belongs to. A CPU worker has gpu "cpu" and no uuid. */
export interface WorkerLabels {
  gpu: string;
  uuid: string;
  miner_id: string;
}

/** What a worker reports for its gauges (validated as it crosses the IPC channel, src/fleet/ipc.ts). */
export const workerGaugesSchema = z.object({
  inflight: z.number().int().nonnegative(),
  pendingSubmissions: z.number().int().nonnegative(),
  outboxFiles: z.number().int().nonnegative(),
  stateWritable: z.boolean(),
  registered: z.boolean(),
  servableModels: z.number().int().nonnegative(),
});
export type WorkerGauges = z.infer<typeof workerGaugesSchema>;

/** One card's health for aitbc_gpu_health. */
export interface GpuHealthRow {
  index: number;
  uuid: string;
  state: "healthy" | "sick" | "lost" | "drained";
}

// UUID as DCGM-exporter spells it on the GPU series, so one label joins both (on(gpu, UUID)).
const WORKER = ["gpu", "UUID", "miner_id"] as const;

/** A worker's labels as its series carry them. */
function seriesLabels(w: WorkerLabels): Record<(typeof WORKER)[number], string> {
  return { gpu: w.gpu, UUID: w.uuid, miner_id: w.miner_id };
}

export class OpsMetrics {
  readonly registry = new Registry();
  private readonly workers = new Map<string, { labels: WorkerLabels; gauges: WorkerGauges | null }>();
  private readonly inference = new Gauge({
    name: "aitbc_miner_inference_backend_info",
    help: "1 for the backend inference computes on (cuda, vulkan, cpu; external: Ollama) and the platform advertised.",
    labelNames: [...WORKER, "backend", "platform", "device"],
    registers: [this.registry],
  });
  private snapshot: GpuSnapshot | null = null;
  /** Each card's health verdict (the supervisor's monitor), for aitbc_gpu_health. */
  private health: GpuHealthRow[] = [];

  private readonly jobs = new Counter({
    name: "aitbc_miner_jobs_total",
    help: "Jobs ended by this miner, by outcome (completed, failed) and error code.",
    labelNames: [...WORKER, "outcome", "error_code"],
    registers: [this.registry],
  });
  // Apart from aitbc_miner_jobs_total: a cancelled job has no verdict (no result, no failure).
  private readonly cancelled = new Counter({
    name: "aitbc_miner_jobs_cancelled_total",
    help: "Jobs dropped because the coordinator no longer runs them for this miner (a client cancelled them, or they went to another miner), by stage (running: generation aborted; delivering: result withdrawn).",
    labelNames: [...WORKER, "stage"],
    registers: [this.registry],
  });
  private readonly duration = new Histogram({
    name: "aitbc_miner_job_duration_seconds",
    help: "Generation time of completed jobs (in s).",
    labelNames: WORKER,
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
    registers: [this.registry],
  });
  private readonly rate = new Histogram({
    name: "aitbc_miner_tokens_per_second",
    help: "Completion tokens per second of completed jobs.",
    labelNames: WORKER,
    buckets: [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000],
    registers: [this.registry],
  });
  private readonly tokens = new Counter({
    name: "aitbc_miner_tokens_generated_total",
    help: "Completion tokens generated.",
    labelNames: WORKER,
    registers: [this.registry],
  });
  private readonly results = new Counter({
    name: "aitbc_miner_results_total",
    help: "Result deliveries, by how the coordinator answered (accepted, already_done, gone, rejected).",
    labelNames: [...WORKER, "answer"],
    registers: [this.registry],
  });
  // Earnings per worker (so per GPU): what each accepted result billed, the coordinator's signed
  // units and price when its receipt has them, else the units sent x the unit price asked.
  private readonly earnedUnits = new Counter({
    name: "aitbc_miner_earned_units_total",
    help: "Units billed by accepted results (GPU seconds: what the coordinator prices).",
    labelNames: WORKER,
    registers: [this.registry],
  });
  private readonly earnings = new Counter({
    name: "aitbc_miner_earnings_total",
    help: "Amount earned by accepted results: units x unit price (the coordinator's signed price when it sends one).",
    labelNames: WORKER,
    registers: [this.registry],
  });
  private readonly polls = new Counter({
    name: "aitbc_miner_polls_total",
    help: "Polls, by result (job, empty, unusable, rate_limited, error).",
    labelNames: [...WORKER, "result"],
    registers: [this.registry],
  });
  private readonly restarts = new Counter({
    name: "aitbc_miner_worker_restarts_total",
    help: "Worker processes restarted by the supervisor after they died.",
    labelNames: WORKER,
    registers: [this.registry],
  });

  constructor() {
    const workers = this.workers;
    const gauge = (name: string, help: string, read: (g: WorkerGauges) => number) =>
      new Gauge({
        name,
        help,
        labelNames: WORKER,
        registers: [this.registry],
        // Read at scrape time from each worker's last report.
        collect() {
          this.reset();
          for (const { labels, gauges } of workers.values())
            if (gauges) this.set(seriesLabels(labels), read(gauges));
        },
      });
    gauge("aitbc_miner_jobs_inflight", "Jobs running now.", (g) => g.inflight);
    gauge(
      "aitbc_miner_results_pending",
      "Computed results being delivered and not yet acknowledged by the coordinator (in memory).",
      (g) => g.pendingSubmissions,
    );
    gauge(
      "aitbc_miner_outbox_records",
      "Results in the durable outbox log (records.log) not yet acknowledged by the coordinator.",
      (g) => g.outboxFiles,
    );
    gauge("aitbc_miner_state_writable", "1 when the state directory takes writes.", (g) =>
      g.stateWritable ? 1 : 0,
    );
    gauge("aitbc_miner_registered", "1 while registered with the coordinator.", (g) =>
      g.registered ? 1 : 0,
    );
    gauge("aitbc_miner_servable_models", "Models this worker can serve now.", (g) => g.servableModels);
    this.registerGpuMetrics();
    const health = () => this.health;
    new Gauge({
      name: "aitbc_gpu_health",
      help: "1 for each GPU's health state now: healthy, sick, lost (a drained worker), or drained (by the operator).",
      labelNames: ["gpu", "UUID", "state"],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const h of health()) this.set({ gpu: String(h.index), UUID: h.uuid, state: h.state }, 1);
      },
    });
  }

  /** A worker to report for (its series exist from now on, with zero counts). */
  addWorker(key: string, labels: WorkerLabels): void {
    this.workers.set(key, { labels, gauges: this.workers.get(key)?.gauges ?? null });
    // Rare: a series from zero lets increase() see the first cancellation.
    for (const stage of ["running", "delivering"]) this.cancelled.inc({ ...this.l(labels), stage }, 0);
  }

  setGauges(key: string, gauges: WorkerGauges): void {
    const w = this.workers.get(key);
    if (w) w.gauges = gauges;
  }

  workerRestarted(key: string): void {
    const w = this.workers.get(key);
    if (w) this.restarts.inc(this.l(w.labels));
  }

  observe(key: string, e: MinerEvent): void {
    const w = this.workers.get(key);
    if (!w) return;
    const l = this.l(w.labels);
    switch (e.type) {
      case "job_completed":
        this.jobs.inc({ ...l, outcome: "completed", error_code: "" });
        this.duration.observe(l, e.durationMs / 1000);
        if (e.durationMs > 0) this.rate.observe(l, (e.completionTokens * 1000) / e.durationMs);
        this.tokens.inc(l, e.completionTokens);
        return;
      case "job_failed":
        this.jobs.inc({ ...l, outcome: "failed", error_code: e.errorCode });
        return;
      case "result_delivered":
        this.results.inc({ ...l, answer: e.answer });
        if (e.units !== undefined) this.earnedUnits.inc(l, e.units);
        if (e.amount !== undefined) this.earnings.inc(l, e.amount);
        return;
      case "poll":
        this.polls.inc({ ...l, result: e.result });
        return;
      case "job_cancelled":
        this.cancelled.inc({ ...l, stage: e.stage });
        return;
      case "inference_runtime":
        this.setInference(key, {
          ...l,
          backend: e.backend,
          platform: e.platform,
          device: e.devices.join(", "),
        });
        return;
    }
  }

  private readonly inferenceLabels = new Map<string, Record<string, string>>();

  /** One series per worker: a restarted worker's runtime replaces its old one. */
  private setInference(key: string, labels: Record<string, string>): void {
    const old = this.inferenceLabels.get(key);
    if (old) this.inference.remove(old);
    this.inference.set(labels, 1);
    this.inferenceLabels.set(key, labels);
  }

  /** Each card's current health (src/fleet/gpu-drain.ts): one aitbc_gpu_health series per card. */
  setGpuHealth(rows: GpuHealthRow[]): void {
    this.health = rows;
  }

  /** The latest GPU snapshot, shared by every worker's card (taken once per scrape upstream). */
  setSnapshot(s: GpuSnapshot | null): void {
    this.snapshot = s;
  }

  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private l(labels: WorkerLabels): Record<string, string> {
    return seriesLabels(labels);
  }

  /** The snapshot's GPUs in telemetry form, computed once per snapshot (not once per metric). */
  private gpus(): ReturnType<typeof toTelemetryJson>["gpus"] {
    if (!this.snapshot) return [];
    if (this.rendered?.of !== this.snapshot) {
      this.rendered = { of: this.snapshot, gpus: toTelemetryJson(this.snapshot).gpus };
    }
    return this.rendered.gpus;
  }

  private rendered: { of: GpuSnapshot; gpus: ReturnType<typeof toTelemetryJson>["gpus"] } | null = null;

  private registerGpuMetrics(): void {
    registerGpuMetrics(this.registry, () => this.gpus());
  }
}
