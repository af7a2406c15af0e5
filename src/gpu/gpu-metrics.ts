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
export const GPU_METRICS: GpuMetricDef[] = [
  {
    name: "DCGM_FI_DEV_GPU_UTIL",
    type: "gauge",
    help: "GPU utilization (in %).",
    value: (g) => g.utilization.gpuPct,
  },
  {
    name: "DCGM_FI_DEV_MEM_COPY_UTIL",
    type: "gauge",
    help: "Memory utilization (in %).",
    value: (g) => g.utilization.memoryPct,
  },
  {
    name: "DCGM_FI_DEV_FB_TOTAL",
    type: "gauge",
    help: "Framebuffer memory total (in MiB).",
    value: (g) => g.memory.totalMiB,
  },
  {
    name: "DCGM_FI_DEV_FB_USED",
    type: "gauge",
    help: "Framebuffer memory used (in MiB).",
    value: (g) => g.memory.usedMiB,
  },
  {
    name: "DCGM_FI_DEV_FB_FREE",
    type: "gauge",
    help: "Framebuffer memory free (in MiB).",
    value: (g) => g.memory.freeMiB,
  },
  {
    name: "DCGM_FI_DEV_FB_RESERVED",
    type: "gauge",
    help: "Framebuffer memory reserved (in MiB).",
    value: (g) => g.memory.reservedMiB,
  },
  {
    name: "DCGM_FI_DEV_GPU_TEMP",
    type: "gauge",
    help: "GPU temperature (in C).",
    value: (g) => g.temperatureC,
  },
  { name: "DCGM_FI_DEV_POWER_USAGE", type: "gauge", help: "Power draw (in W).", value: (g) => g.power.drawW },
  {
    name: "DCGM_FI_DEV_POWER_MGMT_LIMIT",
    type: "gauge",
    help: "Power management limit (in W).",
    value: (g) => g.power.limitW,
  },
  {
    name: "DCGM_FI_DEV_ENFORCED_POWER_LIMIT",
    type: "gauge",
    help: "Enforced power limit (in W).",
    value: (g) => g.power.enforcedLimitW,
  },
  {
    name: "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    type: "counter",
    help: "Total energy consumption since boot (in mJ).",
    value: (g) => g.totalEnergyMj,
  },
  {
    name: "DCGM_FI_DEV_SM_CLOCK",
    type: "gauge",
    help: "SM clock frequency (in MHz).",
    value: (g) => g.clocks.smMHz,
  },
  {
    name: "DCGM_FI_DEV_MEM_CLOCK",
    type: "gauge",
    help: "Memory clock frequency (in MHz).",
    value: (g) => g.clocks.memMHz,
  },
  {
    name: "DCGM_FI_DEV_MAX_SM_CLOCK",
    type: "gauge",
    help: "Maximum SM clock frequency (in MHz).",
    value: (g) => g.clocks.smMaxMHz,
  },
  {
    name: "DCGM_FI_DEV_MAX_MEM_CLOCK",
    type: "gauge",
    help: "Maximum memory clock frequency (in MHz).",
    value: (g) => g.clocks.memMaxMHz,
  },
  { name: "DCGM_FI_DEV_FAN_SPEED", type: "gauge", help: "Fan speed (in %).", value: (g) => g.fanPct },
  {
    name: "DCGM_FI_DEV_PSTATE",
    type: "gauge",
    help: "Performance state (0 = P0, fastest).",
    value: (g) => (g.pstate === null ? null : Number(g.pstate.slice(1))),
  },
  {
    name: "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    type: "counter",
    help: "Uncorrected (double-bit) ECC errors since the driver loaded.",
    value: (g) => g.ecc.uncorrectedVolatile,
  },
  {
    name: "DCGM_FI_DEV_PCIE_LINK_GEN",
    type: "gauge",
    help: "Current PCIe link generation.",
    value: (g) => g.pcie.gen,
  },
  {
    name: "DCGM_FI_DEV_PCIE_LINK_WIDTH",
    type: "gauge",
    help: "Current PCIe link width.",
    value: (g) => g.pcie.width,
  },
  {
    name: "DCGM_FI_DEV_PCIE_TX_THROUGHPUT",
    type: "gauge",
    help: "PCIe TX throughput (in KB/s).",
    value: (g) => g.pcie.txKBs,
  },
  {
    name: "DCGM_FI_DEV_PCIE_RX_THROUGHPUT",
    type: "gauge",
    help: "PCIe RX throughput (in KB/s).",
    value: (g) => g.pcie.rxKBs,
  },
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
