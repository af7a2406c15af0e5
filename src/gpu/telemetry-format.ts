// Renderings of a GpuSnapshot for `telemetry`: stable JSON (docs/telemetry.md), Prometheus text
// exposition with DCGM-exporter metric names, and a gpustat-like table.
import { readExtra } from "./extra.js";
import type { HealthVerdict } from "./health-policy.js";
import type { GpuSnapshot } from "./types.js";

// /2 added each GPU's health verdict and the ECC service counters.
export const TELEMETRY_SCHEMA = "aitbc-telemetry/2";

export interface TelemetryGpu {
  index: number;
  uuid: string;
  name: string;
  pciBusId: string | null;
  error: { code: number | null; message: string } | null;
  memory: {
    totalMiB: number | null;
    usedMiB: number | null;
    freeMiB: number | null;
    reservedMiB: number | null;
  };
  utilization: { gpuPct: number | null; memoryPct: number | null };
  temperatureC: number | null;
  power: { drawW: number | null; limitW: number | null; enforcedLimitW: number | null };
  totalEnergyMj: number | null;
  clocks: { smMHz: number | null; memMHz: number | null; smMaxMHz: number | null; memMaxMHz: number | null };
  fanPct: number | null;
  pstate: string | null;
  clockEventReasons: string[] | null;
  ecc: {
    enabled: boolean | null;
    pendingEnabled: boolean | null;
    uncorrectedVolatile: number | null;
    retiredPagesPending: boolean | null;
    remappedRows: {
      correctable: number | null;
      uncorrectable: number | null;
      pending: boolean | null;
      failure: boolean | null;
    };
  };
  pcie: {
    gen: number | null;
    width: number | null;
    genMax: number | null;
    widthMax: number | null;
    txKBs: number | null;
    rxKBs: number | null;
  };
  computeCapability: string | null;
  processes: { pid: number; usedMemoryMiB: number | null }[] | null;
  /** docs/gpu-health.md; null when no verdict was computed for this rendering. */
  health: HealthVerdict | null;
}

export interface TelemetryJson {
  schema: typeof TELEMETRY_SCHEMA;
  takenAt: string;
  source: GpuSnapshot["source"];
  reason: string | null;
  driverVersion: string | null;
  nvmlVersion: string | null;
  cudaDriverVersion: string | null;
  gpus: TelemetryGpu[];
}

export function toTelemetryJson(s: GpuSnapshot, health?: ReadonlyMap<string, HealthVerdict>): TelemetryJson {
  return {
    schema: TELEMETRY_SCHEMA,
    takenAt: new Date(s.takenAt).toISOString(),
    source: s.source,
    reason: s.reason,
    driverVersion: s.driverVersion,
    nvmlVersion: s.nvmlVersion ?? null,
    cudaDriverVersion: s.cudaDriverVersion,
    gpus: s.devices.map((d) => {
      const x = readExtra(d);
      return {
        index: d.index,
        uuid: d.uuid,
        name: d.name,
        pciBusId: d.pciBusId,
        error: d.error ?? null,
        memory: {
          totalMiB: d.memoryTotalMiB,
          usedMiB: d.memoryUsedMiB,
          freeMiB: d.memoryFreeMiB,
          reservedMiB: x.memoryReservedMiB,
        },
        utilization: { gpuPct: d.utilizationGpuPct, memoryPct: d.utilizationMemoryPct },
        temperatureC: d.temperatureC,
        power: { drawW: d.powerDrawW, limitW: d.powerLimitW, enforcedLimitW: x.powerEnforcedLimitW },
        totalEnergyMj: x.totalEnergyMj,
        clocks: {
          smMHz: x.smClockMHz,
          memMHz: x.memClockMHz,
          smMaxMHz: x.smClockMaxMHz,
          memMaxMHz: x.memClockMaxMHz,
        },
        fanPct: x.fanSpeedPct,
        pstate: x.pstate === null ? null : `P${x.pstate}`,
        clockEventReasons: x.clockEventReasons,
        ecc: {
          enabled: x.eccModeCurrent,
          pendingEnabled: x.eccModePending,
          uncorrectedVolatile: x.eccUncorrectedVolatile,
          retiredPagesPending: x.retiredPagesPending,
          remappedRows: {
            correctable: x.remappedRowsCorrectable,
            uncorrectable: x.remappedRowsUncorrectable,
            pending: x.remapPending,
            failure: x.remapFailure,
          },
        },
        pcie: {
          gen: x.pcieLinkGen,
          width: x.pcieLinkWidth,
          genMax: x.pcieLinkGenMax,
          widthMax: x.pcieLinkWidthMax,
          txKBs: x.pcieTxKBs,
          rxKBs: x.pcieRxKBs,
        },
        computeCapability: d.computeCapability,
        processes: d.processes
          ? d.processes.map((p) => ({ pid: p.pid, usedMemoryMiB: p.usedMemoryMiB }))
          : null,
        health: health?.get(d.uuid) ?? null,
      };
    }),
  };
}

/** Prometheus label value escaping: backslash, double quote, newline. */
export function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function labels(l: Record<string, string>): string {
  const parts = Object.entries(l).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return `{${parts.join(",")}}`;
}

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

function fmt(v: number): string {
  return Number.isInteger(v) ? String(v) : String(Number(v.toFixed(3)));
}

export function toPrometheus(s: GpuSnapshot): string {
  const t = toTelemetryJson(s);
  const out: string[] = [];
  out.push("# HELP aitbc_gpu_source_info Where GPU facts come from (nvml, nvidia-smi, none).");
  out.push("# TYPE aitbc_gpu_source_info gauge");
  out.push(
    `aitbc_gpu_source_info${labels({
      source: t.source,
      driver_version: t.driverVersion ?? "",
      cuda_version: t.cudaDriverVersion ?? "",
    })} 1`,
  );
  out.push("# HELP aitbc_gpu_count GPUs seen.");
  out.push("# TYPE aitbc_gpu_count gauge");
  out.push(`aitbc_gpu_count ${t.gpus.length}`);
  if (t.gpus.length > 0) {
    out.push("# HELP aitbc_gpu_unreadable 1 when the GPU could not be read (e.g. GPU is lost).");
    out.push("# TYPE aitbc_gpu_unreadable gauge");
    for (const g of t.gpus) out.push(`aitbc_gpu_unreadable${labels(gpuLabels(g))} ${g.error ? 1 : 0}`);
  }
  for (const m of GPU_METRICS) {
    const samples = t.gpus.flatMap((g) => {
      const v = m.value(g);
      return v === null ? [] : [`${m.name}${labels(gpuLabels(g))} ${fmt(v)}`];
    });
    if (samples.length === 0) continue;
    out.push(`# HELP ${m.name} ${m.help}`);
    out.push(`# TYPE ${m.name} ${m.type}`);
    out.push(...samples);
  }
  const procs = t.gpus.flatMap((g) =>
    (g.processes ?? []).flatMap((p) =>
      p.usedMemoryMiB === null
        ? []
        : [
            `aitbc_gpu_process_used_memory_mib${labels({ ...gpuLabels(g), pid: String(p.pid) })} ${p.usedMemoryMiB}`,
          ],
    ),
  );
  if (procs.length > 0) {
    out.push("# HELP aitbc_gpu_process_used_memory_mib GPU memory used by a compute process (in MiB).");
    out.push("# TYPE aitbc_gpu_process_used_memory_mib gauge");
    out.push(...procs);
  }
  return `${out.join("\n")}\n`;
}

const cell = (v: number | null, unit = ""): string => (v === null ? "n/a" : `${Math.round(v)}${unit}`);

/** gpustat-style: a line per GPU, then its processes. */
/** The line under a GPU whose verdict says more than "healthy". */
function healthLine(h: HealthVerdict | null): string[] {
  if (!h || h.reasons.length === 0) return [];
  return [
    `    health: ${h.state}${h.drained ? " (drained)" : ""}: ${h.reasons.map((r) => r.message).join("; ")}`,
  ];
}

export function toTable(s: GpuSnapshot, host: string, health?: ReadonlyMap<string, HealthVerdict>): string {
  const t = toTelemetryJson(s, health);
  const lines: string[] = [];
  lines.push(
    `${host}  ${t.takenAt}  driver ${t.driverVersion ?? "n/a"}  CUDA ${t.cudaDriverVersion ?? "n/a"}  (source: ${t.source})`,
  );
  if (t.gpus.length === 0) {
    lines.push(`no GPU: ${t.reason ?? "none found"}`);
    return `${lines.join("\n")}\n`;
  }
  const nameWidth = Math.max(...t.gpus.map((g) => g.name.length));
  for (const g of t.gpus) {
    const head = `[${g.index}] ${g.name.padEnd(nameWidth)}`;
    if (g.error) {
      lines.push(
        `${head} | UNREADABLE: ${g.error.message}${g.error.code === null ? "" : ` (NVML code ${g.error.code})`}`,
      );
      lines.push(...healthLine(g.health));
      continue;
    }
    const mem = `${cell(g.memory.usedMiB).padStart(6)} / ${cell(g.memory.totalMiB).padStart(6)} MiB`;
    const power = `${cell(g.power.drawW).padStart(4)} / ${cell(g.power.limitW).padStart(4)} W`;
    lines.push(
      `${head} | ${cell(g.temperatureC, "°C").padStart(5)}, ${cell(g.utilization.gpuPct, " %").padStart(5)} | ${mem} | ${power}`,
    );
    if (g.processes === null) lines.push("    processes: n/a");
    for (const p of g.processes ?? []) lines.push(`    pid ${p.pid}: ${cell(p.usedMemoryMiB, " MiB")}`);
    lines.push(...healthLine(g.health));
  }
  return `${lines.join("\n")}\n`;
}
