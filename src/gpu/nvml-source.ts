// GpuInfoSource over the NVML addon: maps the addon's raw snapshot to the GpuDevice contract.
import type { NvmlAddon, NvmlDevice, NvmlEvent, NvmlSnapshot } from "../../binding.js";
import type { Logger } from "../log.js";
import { emptyExtra, type GpuExtra } from "./extra.js";
import { type EventWatch, watchNvmlEvents } from "./health-events.js";
import { NVML_FLAGS, PASSED_NUMBERS } from "./nvml-fields.js";
import type { Unpack } from "./packed.js";
import { decodeClockEventReasons } from "./reasons.js";
import type { GpuDevice, GpuInfoSource, GpuSnapshot } from "./types.js";

const MiB = 1024 * 1024;

/** A whole-snapshot failure; `code` is the NVML return code when there is one. */
export class GpuSnapshotError extends Error {
  override readonly name = "GpuSnapshotError";
  constructor(
    message: string,
    readonly code: number | null,
  ) {
    super(message);
  }
}

const mib = (bytes: number | null): number | null => (bytes === null ? null : Math.round(bytes / MiB));
const watts = (mw: number | null): number | null => (mw === null ? null : mw / 1000);

/** 12040 → "12.4" (NVML encodes major*1000 + minor*10). */
export function formatCudaVersion(v: number | null): string | null {
  if (v === null || v <= 0) return null;
  return `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
}

function errorCode(err: unknown): number | null {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === "number" ? c : null;
}

export interface NvmlSourceOptions {
  /** Opened once for this source: that open is this source's hold, returned by close(). */
  addon: NvmlAddon;
  unpack: Unpack;
  library: string;
  reason: string;
  log: Logger;
  /** Read PCIe throughput too (slow on real hardware). */
  pcieThroughput?: boolean;
}

export class NvmlGpuSource implements GpuInfoSource {
  readonly kind = "nvml" as const;
  readonly reason: string;
  private readonly addon: NvmlAddon;
  private readonly unpack: Unpack;
  private readonly log: Logger;
  private readonly pcieThroughput: boolean;
  // Identity of each index from the last good read, so a lost GPU still has a name and UUID.
  private readonly known = new Map<number, { uuid: string; name: string }>();
  private readonly reportedLost = new Set<string>();
  private closed = false;

  constructor(opts: NvmlSourceOptions) {
    this.addon = opts.addon;
    this.unpack = opts.unpack;
    this.reason = opts.reason;
    this.log = opts.log;
    this.pcieThroughput = opts.pcieThroughput ?? false;
  }

  async snapshot(): Promise<GpuSnapshot> {
    this.assertOpen();
    try {
      const raw = await this.addon.snapshotPackedAsync({ pcieThroughput: this.pcieThroughput });
      return this.map(this.unpack(raw));
    } catch (err) {
      throw this.wrap(err);
    }
  }

  /**
   * The same snapshot on the JS thread: it blocks the loop for every NVML call (tens of µs warm,
   * milliseconds for the first snapshot and the 5 s / 30 s refreshes of slow fields, ~20 ms per GPU
   * with PCIe throughput) and for an open or async snapshot in flight. Benches and tests only.
   */
  snapshotSync(): GpuSnapshot {
    this.assertOpen();
    try {
      return this.map(this.unpack(this.addon.snapshotPacked({ pcieThroughput: this.pcieThroughput })));
    } catch (err) {
      throw this.wrap(err);
    }
  }

  /** NVML health events (Xid, ECC) until stopped; null when this addon has no event calls. */
  watchEvents(onEvent: (e: NvmlEvent) => void): EventWatch | null {
    this.assertOpen();
    return watchNvmlEvents(this.addon, onEvent, this.log);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.addon.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new GpuSnapshotError("the NVML source is closed", null);
  }

  private wrap(err: unknown): GpuSnapshotError {
    if (err instanceof GpuSnapshotError) return err;
    const code = errorCode(err);
    const msg = err instanceof Error ? err.message : String(err);
    return new GpuSnapshotError(
      `NVML snapshot failed: ${msg}${code === null ? "" : ` (NVML code ${code})`}`,
      code,
    );
  }

  private map(raw: NvmlSnapshot): GpuSnapshot {
    return {
      source: "nvml",
      reason: this.reason,
      driverVersion: raw.driverVersion,
      cudaDriverVersion: formatCudaVersion(raw.cudaDriverVersion),
      nvmlVersion: raw.nvmlVersion,
      devices: raw.devices.map((d) => this.mapDevice(d)),
      takenAt: Date.now(),
    };
  }

  private mapDevice(d: NvmlDevice): GpuDevice {
    if (d.error !== null) {
      const prev = this.known.get(d.index);
      const uuid = d.uuid ?? prev?.uuid ?? `unknown-gpu-${d.index}`;
      if (!this.reportedLost.has(uuid)) {
        this.reportedLost.add(uuid);
        this.log.error(
          { event: "gpu_unreadable", index: d.index, uuid, code: d.error.code },
          `GPU ${d.index} cannot be read: ${d.error.message} (NVML code ${d.error.code})`,
        );
      }
      return {
        index: d.index,
        uuid,
        name: d.name ?? prev?.name ?? "unknown",
        pciBusId: null,
        memoryTotalMiB: null,
        memoryUsedMiB: null,
        memoryFreeMiB: null,
        utilizationGpuPct: null,
        utilizationMemoryPct: null,
        temperatureC: null,
        powerDrawW: null,
        powerLimitW: null,
        computeCapability: null,
        processes: null,
        extra: { ...emptyExtra() },
        error: { code: d.error.code, message: d.error.message },
      };
    }
    const uuid = d.uuid ?? `unknown-gpu-${d.index}`;
    const name = d.name ?? "unknown";
    this.known.set(d.index, { uuid, name });
    this.reportedLost.delete(uuid);
    // Every fact that is not a core field passes under its own name; three are converted.
    const extra: GpuExtra = emptyExtra();
    for (const k of PASSED_NUMBERS) extra[k] = d[k];
    for (const k of NVML_FLAGS) extra[k] = d[k];
    extra.memoryReservedMiB = mib(d.memoryReservedBytes);
    extra.powerEnforcedLimitW = watts(d.powerEnforcedLimitMw);
    extra.clockEventReasons =
      d.clockEventReasonsMask === null ? null : decodeClockEventReasons(d.clockEventReasonsMask);
    return {
      index: d.index,
      uuid,
      name,
      pciBusId: d.pciBusId,
      memoryTotalMiB: mib(d.memoryTotalBytes),
      memoryUsedMiB: mib(d.memoryUsedBytes),
      memoryFreeMiB: mib(d.memoryFreeBytes),
      utilizationGpuPct: d.utilizationGpuPct,
      utilizationMemoryPct: d.utilizationMemoryPct,
      temperatureC: d.temperatureC,
      powerDrawW: watts(d.powerDrawMw),
      powerLimitW: watts(d.powerLimitMw),
      computeCapability: d.computeCapability
        ? `${d.computeCapability.major}.${d.computeCapability.minor}`
        : null,
      processes: d.processes?.map((p) => ({ pid: p.pid, usedMemoryMiB: mib(p.usedMemoryBytes) })) ?? null,
      // GpuExtra is a plain record of facts; the contract types extra as an open record.
      extra: extra as unknown as Record<string, unknown>,
      error: null,
    };
  }
}
