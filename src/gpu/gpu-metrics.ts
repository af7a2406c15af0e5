// The GPU series, defined once for prom-client: the miner's /metrics (src/ops/metrics.ts) and
// `telemetry --prometheus` register these same gauges and counters, so the two cannot drift.
// Names and labels follow DCGM-exporter's (docs/telemetry.md).
import { Counter, Gauge, Registry } from "prom-client";
import { toTelemetryJson } from "./telemetry-format.js";
import type { TelemetryGpu, TelemetryJson } from "./telemetry-schema.js";
import type { GpuSnapshot } from "./types.js";

export interface GpuMetricDef {
  name: string;
  type: "gauge" | "counter";
  help: string;
  value: (g: TelemetryGpu) => number | null;
}

// Names and units follow DCGM-exporter's default counters (MiB, W, MHz, mJ, °C, %).
const metric =
  (type: GpuMetricDef["type"]) =>
  (name: string, help: string, value: GpuMetricDef["value"]): GpuMetricDef => ({ name, type, help, value });
const gauge = metric("gauge");
/** NVML's running totals (energy, ECC errors), typed counter as DCGM-exporter does, so rate() works. */
const counter = metric("counter");

export const GPU_METRICS: GpuMetricDef[] = [
  gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", (g) => g.utilization.gpuPct),
  gauge("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", (g) => g.utilization.memoryPct),
  gauge("DCGM_FI_DEV_FB_TOTAL", "Framebuffer memory total (in MiB).", (g) => g.memory.totalMiB),
  gauge("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", (g) => g.memory.usedMiB),
  gauge("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", (g) => g.memory.freeMiB),
  gauge("DCGM_FI_DEV_FB_RESERVED", "Framebuffer memory reserved (in MiB).", (g) => g.memory.reservedMiB),
  gauge("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", (g) => g.temperatureC),
  gauge("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", (g) => g.power.drawW),
  gauge("DCGM_FI_DEV_POWER_MGMT_LIMIT", "Power management limit (in W).", (g) => g.power.limitW),
  gauge("DCGM_FI_DEV_ENFORCED_POWER_LIMIT", "Enforced power limit (in W).", (g) => g.power.enforcedLimitW),
  counter(
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "Total energy consumption since boot (in mJ).",
    (g) => g.totalEnergyMj,
  ),
  gauge("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", (g) => g.clocks.smMHz),
  gauge("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).", (g) => g.clocks.memMHz),
  gauge("DCGM_FI_DEV_MAX_SM_CLOCK", "Maximum SM clock frequency (in MHz).", (g) => g.clocks.smMaxMHz),
  gauge("DCGM_FI_DEV_MAX_MEM_CLOCK", "Maximum memory clock frequency (in MHz).", (g) => g.clocks.memMaxMHz),
  gauge("DCGM_FI_DEV_FAN_SPEED", "Fan speed (in %).", (g) => g.fanPct),
  gauge("DCGM_FI_DEV_PSTATE", "Performance state (0 = P0, fastest).", (g) =>
    g.pstate === null ? null : Number(g.pstate.slice(1)),
  ),
  counter(
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "Uncorrected (double-bit) ECC errors since the driver loaded.",
    (g) => g.ecc.uncorrectedVolatile,
  ),
  gauge("DCGM_FI_DEV_PCIE_LINK_GEN", "Current PCIe link generation.", (g) => g.pcie.gen),
  gauge("DCGM_FI_DEV_PCIE_LINK_WIDTH", "Current PCIe link width.", (g) => g.pcie.width),
  gauge("DCGM_FI_DEV_PCIE_TX_THROUGHPUT", "PCIe TX throughput (in KB/s).", (g) => g.pcie.txKBs),
  gauge("DCGM_FI_DEV_PCIE_RX_THROUGHPUT", "PCIe RX throughput (in KB/s).", (g) => g.pcie.rxKBs),
];

export const gpuLabels = (g: TelemetryGpu): Record<string, string> => ({
  gpu: String(g.index),
  UUID: g.uuid,
  device: `nvidia${g.index}`,
  modelName: g.name,
  pci_bus_id: g.pciBusId ?? "",
});

const LABELS = ["gpu", "UUID", "device", "modelName", "pci_bus_id"];

/**
 * Every per-GPU series on `registry`, read at scrape time from `gpus()`: the DCGM_FI_DEV_* facts
 * (a null fact: no sample, as DCGM-exporter does), aitbc_gpu_clock_event_reason and
 * aitbc_gpu_unreadable.
 */
export function registerGpuMetrics(registry: Registry, gpus: () => readonly TelemetryGpu[]): void {
  for (const def of GPU_METRICS) {
    const each = (emit: (labels: Record<string, string>, v: number) => void) => {
      for (const g of gpus()) {
        const v = def.value(g);
        if (v !== null) emit(gpuLabels(g), v);
      }
    };
    const base = { name: def.name, help: def.help, labelNames: LABELS, registers: [registry] };
    // NVML's running totals (energy, ECC errors) are counters, as DCGM-exporter types them, so
    // rate() works; their value is read, not counted here.
    if (def.type === "counter")
      new Counter({
        ...base,
        collect() {
          this.reset();
          each((labels, v) => this.inc(labels, v));
        },
      });
    else
      new Gauge({
        ...base,
        collect() {
          this.reset();
          each((labels, v) => this.set(labels, v));
        },
      });
  }
  new Gauge({
    name: "aitbc_gpu_clock_event_reason",
    help: "1 for each clocks-event (throttle) reason active now.",
    labelNames: [...LABELS, "reason"],
    registers: [registry],
    collect() {
      this.reset();
      for (const g of gpus())
        for (const r of g.clockEventReasons ?? []) this.set({ ...gpuLabels(g), reason: r }, 1);
    },
  });
  new Gauge({
    name: "aitbc_gpu_unreadable",
    help: "1 when the GPU could not be read (e.g. GPU is lost).",
    labelNames: LABELS,
    registers: [registry],
    collect() {
      this.reset();
      for (const g of gpus()) this.set(gpuLabels(g), g.error ? 1 : 0);
    },
  });
}

/** The snapshot-wide series only `telemetry --prometheus` shows: source, count, per-process memory. */
function registerSnapshotMetrics(registry: Registry, t: TelemetryJson): void {
  new Gauge({
    name: "aitbc_gpu_source_info",
    help: "Where GPU facts come from (nvml, nvidia-smi, none).",
    labelNames: ["source", "driver_version", "cuda_version"],
    registers: [registry],
  }).set(
    { source: t.source, driver_version: t.driverVersion ?? "", cuda_version: t.cudaDriverVersion ?? "" },
    1,
  );
  new Gauge({ name: "aitbc_gpu_count", help: "GPUs seen.", registers: [registry] }).set(t.gpus.length);
  const procs = new Gauge({
    name: "aitbc_gpu_process_used_memory_mib",
    help: "GPU memory used by a compute process (in MiB).",
    labelNames: [...LABELS, "pid"],
    registers: [registry],
  });
  for (const g of t.gpus)
    for (const p of g.processes ?? [])
      if (p.usedMemoryMiB !== null) procs.set({ ...gpuLabels(g), pid: String(p.pid) }, p.usedMemoryMiB);
}

/** `telemetry --prometheus`: one snapshot through the same definitions /metrics uses. */
export function toPrometheus(s: GpuSnapshot): Promise<string> {
  const registry = new Registry();
  const t = toTelemetryJson(s);
  registerSnapshotMetrics(registry, t);
  registerGpuMetrics(registry, () => t.gpus);
  return registry.metrics();
}
