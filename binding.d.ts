// Hand-kept typings of the NVML addon (native/addon.cc), loaded from
// prebuilds/<platform>-<arch>/aitbc_nvml.node or build/Release/aitbc_nvml.node.
//
// Error model:
// - The library missing, unloadable, or nvmlInit failing is a normal state: `open()` RESOLVES with
//   `{available:false, reason}` (reason = dlerror text or "nvmlInit failed: <nvmlErrorString> (NVML
//   code N)"); it never rejects for that.
// - A field the driver does not support (or any other per-field error) is `null`.
// - A failure that breaks one device (GPU_IS_LOST = 15, no handle) is a per-device entry with
//   `error: {code, message}` (message = nvmlErrorString); the other devices are still read.
// - A failure that breaks the whole snapshot (not open, nvmlDeviceGetCount failing) THROWS
//   (`snapshot`) or REJECTS (`snapshotAsync`) with an `NvmlError`: `code` is the NVML return code.
// One NVML session per process: `open()` again with the same library is a no-op, with another
// library it shuts the first one down. `close()` (also run at environment teardown) calls
// nvmlShutdown and dlclose.

export interface NvmlError extends Error {
  name: "NvmlError";
  /** NVML return code (1 uninitialized, 15 GPU is lost, 999 unknown, ...). */
  code: number;
}

export interface NvmlOpenOptions {
  /** Library path; default: env AITBC_NVML_LIBRARY, else "libnvidia-ml.so.1" (dlopen search). */
  library?: string;
}

export type NvmlOpenResult =
  | {
      available: true;
      library: string;
      /** Names actually bound, e.g. "nvmlInit_v2" or, on an old driver, "nvmlInit". */
      resolvedSymbols: string[];
      /** Logical calls with no symbol at all (the fields they feed are always null). */
      missingSymbols: string[];
    }
  | {
      available: false;
      library: string;
      reason: string;
      /** NVML return code of a failed nvmlInit; null when the library itself did not load. */
      code: number | null;
    };

export interface NvmlSnapshotOptions {
  /** Read PCIe TX/RX throughput (blocks ~20 ms per device on real hardware). Default false. */
  pcieThroughput?: boolean;
  /** Read compute process lists. Default true. */
  processes?: boolean;
}

export interface NvmlProcess {
  pid: number;
  /** null when NVML reports NVML_VALUE_NOT_AVAILABLE (e.g. no permission, WDDM). */
  usedMemoryBytes: number | null;
}

export interface NvmlDeviceOk {
  index: number;
  error: null;
  name: string | null;
  uuid: string | null;
  pciBusId: string | null;
  memoryTotalBytes: number | null;
  memoryUsedBytes: number | null;
  memoryFreeBytes: number | null;
  /** Only from nvmlDeviceGetMemoryInfo_v2; null on older drivers. */
  memoryReservedBytes: number | null;
  utilizationGpuPct: number | null;
  utilizationMemoryPct: number | null;
  temperatureC: number | null;
  powerDrawMw: number | null;
  powerLimitMw: number | null;
  powerEnforcedLimitMw: number | null;
  /** Total energy since the driver was loaded, millijoules. */
  totalEnergyMj: number | null;
  smClockMHz: number | null;
  memClockMHz: number | null;
  smClockMaxMHz: number | null;
  memClockMaxMHz: number | null;
  fanSpeedPct: number | null;
  /** 0 (max performance) .. 15; null when unknown. */
  pstate: number | null;
  /** Bit mask of nvmlClocksEventReasons (decode with src/gpu/reasons.ts). */
  clockEventReasons: number | null;
  eccModeCurrent: boolean | null;
  eccModePending: boolean | null;
  eccUncorrectedVolatile: number | null;
  pcieLinkGen: number | null;
  pcieLinkWidth: number | null;
  pcieLinkGenMax: number | null;
  pcieLinkWidthMax: number | null;
  /** KB/s; null unless asked for with pcieThroughput. */
  pcieTxKBs: number | null;
  pcieRxKBs: number | null;
  computeCapability: { major: number; minor: number } | null;
  processes: NvmlProcess[] | null;
}

export interface NvmlDeviceFailed {
  index: number;
  error: { code: number; message: string };
  /** Whatever was read before the failure. */
  name: string | null;
  uuid: string | null;
}

export type NvmlDevice = NvmlDeviceOk | NvmlDeviceFailed;

export interface NvmlSnapshot {
  driverVersion: string | null;
  nvmlVersion: string | null;
  /** e.g. 12040 for CUDA 12.4. */
  cudaDriverVersion: number | null;
  devices: NvmlDevice[];
}

/**
 * The same facts packed for speed (src/gpu/packed.ts decodes it): per device `packedFieldCount`
 * numbers in `numbers` (NaN = null) in the order memoryTotal/Used/Free/ReservedBytes,
 * utilizationGpu/MemoryPct, temperatureC, powerDraw/Limit/EnforcedLimitMw, totalEnergyMj,
 * sm/memClockMHz, sm/memClockMaxMHz, fanSpeedPct, pstate, clockEventReasons, eccModeCurrent/Pending
 * (1/0), eccUncorrectedVolatile, pcieLinkGen/Width/GenMax/WidthMax, pcieTx/RxKBs, cc major/minor,
 * error code, process start, process count; per device 4 `strings` (name, uuid, pciBusId, error
 * message); `processes` holds (pid, usedMemoryBytes) pairs.
 */
export interface NvmlPackedSnapshot {
  driverVersion: string | null;
  nvmlVersion: string | null;
  cudaDriverVersion: number | null;
  count: number;
  numbers: Float64Array;
  strings: (string | null)[];
  processes: Float64Array;
}

export interface NvmlAddon {
  /** dlopen + symbol resolution + nvmlInit, off the JS thread. */
  open(options?: NvmlOpenOptions): Promise<NvmlOpenResult>;
  /** Synchronous snapshot for hot paths (no blocking calls unless pcieThroughput). Throws NvmlError. */
  snapshot(options?: NvmlSnapshotOptions): NvmlSnapshot;
  /** The same, on the libuv thread pool. Rejects with NvmlError. */
  snapshotAsync(options?: NvmlSnapshotOptions): Promise<NvmlSnapshot>;
  snapshotPacked(options?: NvmlSnapshotOptions): NvmlPackedSnapshot;
  snapshotPackedAsync(options?: NvmlSnapshotOptions): Promise<NvmlPackedSnapshot>;
  /** Numbers per device in NvmlPackedSnapshot.numbers (32). */
  readonly packedFieldCount: number;
  /** nvmlShutdown + dlclose; idempotent. */
  close(): void;
  isOpen(): boolean;
  /** Bumped when this surface changes; the loader refuses a binary with another value. */
  readonly abiVersion: 1;
}
