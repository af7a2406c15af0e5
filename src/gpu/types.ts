// Contract of the GPU-info source (src/gpu/): the miner loop sees only this.

export type GpuSourceKind = "nvml" | "nvidia-smi" | "none";

export interface GpuProcess {
  pid: number;
  usedMemoryMiB: number | null;
}

/** One GPU. Every field the hardware or driver may not support is null, never a guess. */
export interface GpuDevice {
  index: number;
  uuid: string;
  name: string;
  pciBusId: string | null;
  memoryTotalMiB: number | null;
  memoryUsedMiB: number | null;
  memoryFreeMiB: number | null;
  utilizationGpuPct: number | null;
  utilizationMemoryPct: number | null;
  temperatureC: number | null;
  powerDrawW: number | null;
  powerLimitW: number | null;
  computeCapability: string | null;
  processes: GpuProcess[] | null;
  /** Source-specific extra facts (clocks, ECC, PCIe, throttle reasons...). */
  extra?: Record<string, unknown>;
  /**
   * Set when the device could not be read at all (e.g. NVML GPU_IS_LOST, code 15): the numeric
   * fields are then null, name/uuid are the last known ones. Absent or null for a healthy device.
   */
  error?: { code: number | null; message: string } | null;
}

export interface GpuSnapshot {
  source: GpuSourceKind;
  /** Why this source (e.g. "NVML not found: libnvidia-ml.so.1: cannot open shared object file"). */
  reason: string | null;
  driverVersion: string | null;
  cudaDriverVersion: string | null;
  /** NVML library version (e.g. "12.550.54.14") when the source knows it. */
  nvmlVersion?: string | null;
  devices: GpuDevice[];
  takenAt: number;
}

export interface GpuInfoSource {
  readonly kind: GpuSourceKind;
  /** Human reason for the choice of source. */
  readonly reason: string | null;
  snapshot(): Promise<GpuSnapshot>;
  close(): Promise<void>;
}
