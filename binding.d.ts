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
//   (`snapshotPacked`) or REJECTS (`snapshotPackedAsync`) with an `NvmlError`: `code` is the NVML
//   return code.
// - Any other C++ exception in a call or a worker (out of memory, a device count no driver
//   reports) throws or rejects with a `NativeError` (`code` null), never a crash
//   (native/js_errors.h).
// One NVML session per process, reference-counted in the addon: every `open()` that resolves
// available takes a hold, every `close()` returns one of the calling environment's holds, and the
// last hold returned calls nvmlShutdown and dlclose. An environment's teardown (a worker thread
// exiting, the main thread at exit) returns the holds it still has, never another's. `open()` with
// another library while a hold exists resolves unavailable.

import type { NvmlFacts } from "./src/gpu/nvml-fields.js";

export interface NvmlError extends Error {
  name: "NvmlError";
  /** NVML return code (1 uninitialized, 15 GPU is lost, 999 unknown, ...). */
  code: number;
}

/** A C++ exception with no NVML code behind it; the message says what (prefixed "aitbc_nvml: "). */
export interface NativeError extends Error {
  name: "NativeError";
  code: null;
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

/**
 * A device read: its NVML facts by their one name (src/gpu/nvml-fields.ts, the same names as the
 * C++ members and packed rows: memoryTotalBytes, fanPct, clockEventReasonsMask, eccModeCurrent, ...;
 * memoryReservedBytes only from nvmlDeviceGetMemoryInfo_v2, pcieTxKBs/pcieRxKBs only when asked
 * for with pcieThroughput, pstate 0..15), each null when unsupported, plus identity and the two
 * facts assembled in JS.
 */
export interface NvmlDeviceOk extends NvmlFacts {
  index: number;
  error: null;
  name: string | null;
  uuid: string | null;
  pciBusId: string | null;
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

/** Names of the packed values, in their order within one device's slice (see NvmlPackedSnapshot). */
export interface NvmlPackedLayout {
  /**
   * Today: every NVML fact by its name (flags such as eccModeCurrent as 1/0),
   * computeCapabilityMajor/Minor, errorCode (set only on a failed device) and processCount.
   */
  readonly packedFields: readonly string[];
  /** Today: name, uuid, pciBusId, errorMessage. */
  readonly packedStrings: readonly string[];
}

/**
 * The snapshot packed for speed (src/gpu/packed.ts decodes it into NvmlSnapshot): device i's
 * numbers are `numbers[i * packedFields.length + packedFields.indexOf(name)]` (NaN = null), its
 * strings likewise in `strings` with `packedStrings`; `processes` holds (pid, usedMemoryBytes)
 * pairs, each device's `processCount` pairs after the previous devices' pairs.
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

/** What one NVML event (nvmlEventSetWait) or a failing wait says; `timestamp` = ms since epoch when received. */
export type NvmlEvent =
  | {
      kind: "event";
      /** null when the event's device handle is none this watcher registered. */
      index: number | null;
      uuid: string | null;
      type: "xid" | "double_bit_ecc" | "single_bit_ecc" | "other";
      /** The raw nvmlEventType bit(s). */
      eventType: number;
      /** The Xid (eventData) of an "xid" event; null for other types. */
      xid: number | null;
      /** The raw eventData. */
      data: number;
      timestamp: number;
    }
  | {
      /** nvmlEventSetWait failed with something other than a timeout (once per new code). */
      kind: "error";
      code: number;
      message: string;
      timestamp: number;
    };

export interface NvmlEventDeviceStatus {
  index: number;
  uuid: string | null;
  /** unsupported: the device (or driver) answered NOT_SUPPORTED, or supports none of the types. */
  status: "registered" | "unsupported" | "lost" | "error";
  /** Types registered: "xid", "double_bit_ecc", "single_bit_ecc". */
  eventTypes: string[];
  code: number | null;
  message: string | null;
}

export interface NvmlEventsStart {
  /** False when no device could be registered (or the library has no event calls): no thread runs. */
  running: boolean;
  reason: string | null;
  /** "nvmlEventSetWait_v2", or "nvmlEventSetWait" on an old driver; null when neither exists. */
  waitCall: string | null;
  devices: NvmlEventDeviceStatus[];
}

export interface LibraryProbe {
  name: string;
  found: boolean;
  /** The file the loader opened, when found. */
  path: string | null;
  /** dlerror() text, when not found. */
  error: string | null;
}

export interface FileLock {
  locked: boolean;
  fd: number | null;
  holderPid: number | null;
  /** Why the lock could not be tried (open or fcntl failed), not "held by another". */
  error: string | null;
}

export interface NvmlAddon extends NvmlPackedLayout {
  /**
   * dlopen + symbol resolution + nvmlInit, off the JS thread; takes a hold when available. The path
   * is required (src/gpu/addon.ts defaultNvmlLibrary picks it); a non-string or empty one throws a
   * TypeError.
   */
  open(library: string): Promise<NvmlOpenResult>;
  /**
   * The snapshot on the JS thread: every NVML call of a snapshot, made here (driver ioctls: ~74 µs
   * for a warm H200, but the first snapshot reads the static facts and every 5 s / 30 s the energy
   * counter and power limit are read again, milliseconds each; pcieThroughput adds ~20 ms per
   * device), under the session lock, so it also waits for an open() or async snapshot in flight.
   * Throws NvmlError or NativeError.
   */
  snapshotPacked(options?: NvmlSnapshotOptions): NvmlPackedSnapshot;
  /** The same calls on the libuv thread pool. Rejects with NvmlError or NativeError. */
  snapshotPackedAsync(options?: NvmlSnapshotOptions): Promise<NvmlPackedSnapshot>;
  /** Returns one of this environment's holds (none held: no-op); the last one shuts NVML down. */
  close(): void;
  isOpen(): boolean;
  /**
   * dlopen each library (RTLD_LAZY | RTLD_LOCAL) off the JS thread, note where the loader found it
   * or dlerror()'s text, and dlclose it: which CUDA runtime library a GPU backend would lack.
   * Absent in addons built before it (the caller then reports the probe as unavailable).
   */
  probeLibraries?(names: string[]): Promise<LibraryProbe[]>;
  /**
   * Take an exclusive POSIX record lock (fcntl F_SETLK) on `path` (created 0600), non-blocking, and
   * keep its descriptor open: the lock lasts until unlockFile(fd) or the process's death. Held by
   * another process: `locked: false` with its PID when the kernel can tell. Absent in older addons.
   */
  lockFile?(path: string): FileLock;
  unlockFile?(fd: number): void;
  /**
   * Watch NVML events (Xid critical errors, double- and single-bit ECC) on a thread of the addon's
   * own; `onEvent` runs on the JS thread. Takes a session hold until stopEvents. Throws NvmlError
   * (code 1) when NVML is not open, an Error when a watcher already runs in this process. The
   * watcher never keeps the process alive; an environment's teardown stops it. Absent in older
   * addons.
   */
  startEvents?(onEvent: (e: NvmlEvent) => void): NvmlEventsStart;
  /** Stops this environment's watcher and joins its thread (within ~0.1 s); false when none ran. */
  stopEvents?(): boolean;
  eventsRunning?(): boolean;
  /** Bumped when this surface changes; the loader refuses a binary with another value. */
  readonly abiVersion: 2;
}
