// Renderings of a GpuSnapshot for `telemetry`: stable JSON (docs/telemetry.md; its shape is
// telemetry-schema.ts) and a gpustat-like table. Prometheus text is gpu-metrics.ts's.
import { readExtra } from "./extra.js";
import type { HealthVerdict } from "./health-policy.js";
import {
  GROUPS,
  groupValues,
  TELEMETRY_SCHEMA,
  type TelemetryGpu,
  type TelemetryJson,
  TOP_LEVEL_FLAGS,
  TOP_LEVEL_NUMBERS,
} from "./telemetry-schema.js";
import type { GpuSnapshot } from "./types.js";

export { TELEMETRY_SCHEMA, type TelemetryGpu, type TelemetryJson } from "./telemetry-schema.js";

export function toTelemetryJson(s: GpuSnapshot, health?: ReadonlyMap<string, HealthVerdict>): TelemetryJson {
  return {
    schema: TELEMETRY_SCHEMA,
    takenAt: new Date(s.takenAt).toISOString(),
    source: s.source,
    reason: s.reason,
    driverVersion: s.driverVersion,
    nvmlVersion: s.nvmlVersion ?? null,
    cudaDriverVersion: s.cudaDriverVersion,
    gpus: s.devices.map((d): TelemetryGpu => {
      const x = readExtra(d);
      // Facts no group places, each under its one name (telemetry-schema.ts).
      const top: Record<string, number | boolean | null> = {};
      for (const k of TOP_LEVEL_NUMBERS) top[k] = x[k];
      for (const k of TOP_LEVEL_FLAGS) top[k] = x[k];
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
        ...(top as Pick<TelemetryGpu, (typeof TOP_LEVEL_NUMBERS)[number] | (typeof TOP_LEVEL_FLAGS)[number]>),
        clocks: groupValues(GROUPS.clocks, x),
        pstate: x.pstate === null ? null : `P${x.pstate}`,
        clockEventReasons: x.clockEventReasons,
        ecc: groupValues(GROUPS.ecc, x),
        pcie: groupValues(GROUPS.pcie, x),
        computeCapability: d.computeCapability,
        processes: d.processes
          ? d.processes.map((p) => ({ pid: p.pid, usedMemoryMiB: p.usedMemoryMiB }))
          : null,
        health: health?.get(d.uuid) ?? null,
      };
    }),
  };
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
