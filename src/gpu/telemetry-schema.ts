// The `telemetry --json` document (docs/telemetry.md), defined once: the zod
// schema is the contract (strict: an undocumented key fails), and its types are inferred from it.
// Facts the nested groups below do not place (fanPct, totalEnergyMj, and any fact added later)
// are keys of each GPU under their one NVML name (nvml-fields.ts).
import { z } from "zod";
import { healthVerdictSchema } from "./health-policy.js";
import { NVML_FLAGS, type NvmlFlag, PASSED_NUMBERS, type PassedNumber } from "./nvml-fields.js";

// /2 added each GPU's health verdict and the ECC service counters.
export const TELEMETRY_SCHEMA = "aitbc-telemetry/2";

const n = z.number().nullable();
const flag = z.boolean().nullable();

/** Extras placed in a group below, or (the mask) shown only decoded: not top-level keys. */
const PLACED = [
  "smClockMHz",
  "memClockMHz",
  "smClockMaxMHz",
  "memClockMaxMHz",
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
  "eccModeCurrent",
  "eccModePending",
  "retiredPagesPending",
  "remapPending",
  "remapFailure",
] as const satisfies readonly (PassedNumber | NvmlFlag)[];
type Placed = (typeof PLACED)[number];

const placed: ReadonlySet<string> = new Set(PLACED);
/** The facts that are top-level keys of a GPU, under their NVML name: every one not placed. */
export const TOP_LEVEL_NUMBERS = PASSED_NUMBERS.filter(
  (f): f is Exclude<PassedNumber, Placed> => !placed.has(f),
);
export const TOP_LEVEL_FLAGS = NVML_FLAGS.filter((f): f is Exclude<NvmlFlag, Placed> => !placed.has(f));

function keys<const K extends readonly string[], S extends z.ZodType>(names: K, schema: S) {
  return Object.fromEntries(names.map((k) => [k, schema])) as { [P in K[number]]: S };
}

export const telemetryGpuSchema = z.strictObject({
  index: z.number().int(),
  uuid: z.string(),
  name: z.string(),
  pciBusId: z.string().nullable(),
  error: z.strictObject({ code: n, message: z.string() }).nullable(),
  memory: z.strictObject({ totalMiB: n, usedMiB: n, freeMiB: n, reservedMiB: n }),
  utilization: z.strictObject({ gpuPct: n, memoryPct: n }),
  temperatureC: n,
  power: z.strictObject({ drawW: n, limitW: n, enforcedLimitW: n }),
  ...keys(TOP_LEVEL_NUMBERS, n),
  ...keys(TOP_LEVEL_FLAGS, flag),
  clocks: z.strictObject({ smMHz: n, memMHz: n, smMaxMHz: n, memMaxMHz: n }),
  pstate: z
    .string()
    .regex(/^P\d+$/)
    .nullable(),
  clockEventReasons: z.array(z.string()).nullable(),
  ecc: z.strictObject({
    enabled: flag,
    pendingEnabled: flag,
    uncorrectedVolatile: n,
    retiredPagesPending: flag,
    remappedRows: z.strictObject({ correctable: n, uncorrectable: n, pending: flag, failure: flag }),
  }),
  pcie: z.strictObject({ gen: n, width: n, genMax: n, widthMax: n, txKBs: n, rxKBs: n }),
  computeCapability: z.string().nullable(),
  processes: z.array(z.strictObject({ pid: z.number().int(), usedMemoryMiB: n })).nullable(),
  /** docs/gpu-health.md; null when no verdict was computed for this rendering. */
  health: healthVerdictSchema.nullable(),
});

export const telemetryJsonSchema = z.strictObject({
  schema: z.literal(TELEMETRY_SCHEMA),
  takenAt: z.iso.datetime(),
  source: z.enum(["nvml", "nvidia-smi", "none"]),
  reason: z.string().nullable(),
  driverVersion: z.string().nullable(),
  nvmlVersion: z.string().nullable(),
  cudaDriverVersion: z.string().nullable(),
  gpus: z.array(telemetryGpuSchema),
});

export type TelemetryGpu = z.infer<typeof telemetryGpuSchema>;
export type TelemetryJson = z.infer<typeof telemetryJsonSchema>;
