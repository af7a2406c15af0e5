// GPU information for the miner: NVML addon first, then nvidia-smi, then none; the source
// records which one it uses and why.
import type { Logger } from "../log.js";
import { defaultNvmlLibrary, loadAddon } from "./addon.js";
import { NvmlGpuSource } from "./nvml-source.js";
import { SmiGpuSource } from "./smi.js";
import type { GpuInfoSource, GpuSnapshot } from "./types.js";

export { type AddonLoad, addonCandidates, defaultNvmlLibrary, loadAddon } from "./addon.js";
export { type GpuExtra, readExtra } from "./extra.js";
export { type EventWatch, watchNvmlEvents } from "./health-events.js";
export { GpuHealthMonitor, type GpuHealthMonitorOptions, type HealthListener } from "./health-monitor.js";
export {
  APPLICATION_XIDS,
  classifyXid,
  evaluateHealth,
  type HealthReason,
  type HealthState,
  type HealthVerdict,
} from "./health-policy.js";
export {
  type AdmitOptions,
  type AdmitVerdict,
  admit,
  DEFAULT_HEADROOM_MIB,
  DEFAULT_OVERHEAD_FACTOR,
  needMiB,
  ownVramMiB,
  pickDevice,
  VramWatch,
} from "./memory.js";
export { formatCudaVersion, GpuSnapshotError, NvmlGpuSource } from "./nvml-source.js";
export { decodeClockEventReasons } from "./reasons.js";
export {
  capabilitiesFromSnapshot,
  type GpuCapabilities,
  type GpuHeartbeat,
  heartbeatMetrics,
} from "./report.js";
export { parseSmiAppsCsv, parseSmiGpuCsv, SMI_GPU_FIELDS, SmiGpuSource } from "./smi.js";
export type * from "./types.js";

export interface GpuSourceOptions {
  /** libnvidia-ml path; default env AITBC_NVML_LIBRARY, else "libnvidia-ml.so.1". */
  nvmlLibrary?: string | undefined;
  log: Logger;
  /** Skip NVML and use nvidia-smi (diagnostics). */
  preferNvidiaSmi?: boolean;
  /** nvidia-smi executable (default "nvidia-smi" on PATH). */
  nvidiaSmi?: string;
  /** Read slow PCIe throughput counters (NVML only). */
  pcieThroughput?: boolean;
}

class NoGpuSource implements GpuInfoSource {
  readonly kind = "none" as const;
  constructor(readonly reason: string) {}
  async snapshot(): Promise<GpuSnapshot> {
    return {
      source: "none",
      reason: this.reason,
      driverVersion: null,
      cudaDriverVersion: null,
      nvmlVersion: null,
      devices: [],
      takenAt: Date.now(),
    };
  }
  async close(): Promise<void> {}
}

async function tryNvml(opts: GpuSourceOptions): Promise<GpuInfoSource | string> {
  const loaded = loadAddon();
  if (!loaded.ok) return loaded.reason;
  const r = await loaded.addon.open(opts.nvmlLibrary || defaultNvmlLibrary());
  if (!r.available) return `NVML not available: ${r.reason}`;
  const missing = r.missingSymbols.length > 0 ? `; missing symbols: ${r.missingSymbols.join(", ")}` : "";
  return new NvmlGpuSource({
    addon: loaded.addon,
    unpack: loaded.unpack,
    library: r.library,
    reason: `NVML via ${r.library} (addon ${loaded.path})${missing}`,
    log: opts.log,
    pcieThroughput: opts.pcieThroughput ?? false,
  });
}

async function trySmi(opts: GpuSourceOptions, why: string): Promise<GpuInfoSource | string> {
  const src = new SmiGpuSource(`${why}; using nvidia-smi`, {
    log: opts.log,
    ...(opts.nvidiaSmi ? { command: opts.nvidiaSmi } : {}),
  });
  try {
    const s = await src.snapshot();
    if (s.devices.length === 0) return "nvidia-smi lists no GPU";
    return src;
  } catch (err) {
    const msg = (err as Error).message;
    return /ENOENT/.test(msg) ? "nvidia-smi not found" : msg.split("\n")[0]!;
  }
}

export async function createGpuInfoSource(opts: GpuSourceOptions): Promise<GpuInfoSource> {
  const reasons: string[] = [];
  if (!opts.preferNvidiaSmi) {
    const nvml = await tryNvml(opts);
    if (typeof nvml !== "string") {
      opts.log.info({ event: "gpu_source", source: "nvml", reason: nvml.reason }, "GPU info from NVML");
      return nvml;
    }
    reasons.push(nvml);
  } else {
    reasons.push("nvidia-smi preferred");
  }
  const smi = await trySmi(opts, reasons.join("; "));
  if (typeof smi !== "string") {
    opts.log.warn(
      { event: "gpu_source", source: "nvidia-smi", reason: smi.reason },
      "GPU info falls back to nvidia-smi",
    );
    return smi;
  }
  reasons.push(smi);
  const reason = `no GPU information: ${reasons.join("; ")}`;
  opts.log.info({ event: "gpu_source", source: "none", reason }, "no GPU found; running on the CPU");
  return new NoGpuSource(reason);
}
