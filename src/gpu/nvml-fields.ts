// The per-device NVML facts, each under its one name: the C++ member and packed row
// (native/snapshot.h AITBC_NVML_NUMBERS / AITBC_NVML_FLAGS), the addon's device objects
// (binding.d.ts NvmlDeviceOk), GpuDevice.extra (src/gpu/extra.ts) and, for a fact not placed
// elsewhere, the key of `telemetry --json` (src/gpu/telemetry-schema.ts). Adding one is
// docs/extending.md's "How to add an NVML field".

/**
 * The facts GpuDevice carries in a unit of its own (MiB, W), as its core fields or converted extras
 * (src/gpu/nvml-source.ts).
 */
export const CORE_FACTS = [
  "memoryTotalBytes",
  "memoryUsedBytes",
  "memoryFreeBytes",
  "memoryReservedBytes",
  "utilizationGpuPct",
  "utilizationMemoryPct",
  "temperatureC",
  "powerDrawMw",
  "powerLimitMw",
  "powerEnforcedLimitMw",
] as const;

/** The numbers GpuDevice.extra holds under their NVML name. */
export const PASSED_NUMBERS = [
  "totalEnergyMj",
  "smClockMHz",
  "memClockMHz",
  "smClockMaxMHz",
  "memClockMaxMHz",
  "fanPct",
  "pstate",
  "clockEventReasonsMask",
  "eccUncorrectedVolatile",
  "remappedRowsCorrectable",
  "remappedRowsUncorrectable",
  "pcieLinkGen",
  "pcieLinkWidth",
  "pcieLinkGenMax",
  "pcieLinkWidthMax",
  "pcieTxKBs",
  "pcieRxKBs",
] as const;

/** Every number, units in the name as NVML gives them; null when unsupported (the packed row is read by name). */
export const NVML_NUMBERS = [...CORE_FACTS, ...PASSED_NUMBERS] as const;

/** Yes/no facts (packed as 1/0). */
export const NVML_FLAGS = [
  "eccModeCurrent",
  "eccModePending",
  "retiredPagesPending",
  "remapPending",
  "remapFailure",
] as const;

export type NvmlNumber = (typeof NVML_NUMBERS)[number];
export type NvmlFlag = (typeof NVML_FLAGS)[number];

/** One device's facts by name. */
export type NvmlFacts = { [K in NvmlNumber]: number | null } & { [K in NvmlFlag]: boolean | null };

export type PassedNumber = (typeof PASSED_NUMBERS)[number];
