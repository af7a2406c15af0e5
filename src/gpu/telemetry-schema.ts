// The `telemetry --json` document (docs/telemetry.md), defined once: the zod
// schema is the contract (strict: an undocumented key fails), and its types are inferred from it.
// Facts the nested groups (GROUPS) do not place (fanPct, totalEnergyMj, and any fact added later)
// are keys of each GPU under their one NVML name (nvml-fields.ts).
import { z } from "zod";
import { healthVerdictSchema } from "./health-policy.js";
import { NVML_FLAGS, type NvmlFlag, PASSED_NUMBERS, type PassedNumber } from "./nvml-fields.js";

// /2 added each GPU's health verdict and the ECC service counters.
export const TELEMETRY_SCHEMA = "aitbc-telemetry/2";

const n = z.number().nullable();
const flag = z.boolean().nullable();

/**
 * The facts `telemetry --json` shows in a nested group: JSON key → the fact's one NVML name. The
 * keys are the operator's contract (docs/telemetry.md); adding a grouped fact is one line here.
 */
export const GROUPS = {
  clocks: {
    smMHz: "smClockMHz",
    memMHz: "memClockMHz",
    smMaxMHz: "smClockMaxMHz",
    memMaxMHz: "memClockMaxMHz",
  },
  ecc: {
    enabled: "eccModeCurrent",
    pendingEnabled: "eccModePending",
    uncorrectedVolatile: "eccUncorrectedVolatile",
    retiredPagesPending: "retiredPagesPending",
    remappedRows: {
      correctable: "remappedRowsCorrectable",
      uncorrectable: "remappedRowsUncorrectable",
      pending: "remapPending",
      failure: "remapFailure",
    },
  },
  pcie: {
    gen: "pcieLinkGen",
    width: "pcieLinkWidth",
    genMax: "pcieLinkGenMax",
    widthMax: "pcieLinkWidthMax",
    txKBs: "pcieTxKBs",
    rxKBs: "pcieRxKBs",
  },
} as const satisfies Record<string, Group>;

/** Facts shown under a key of their own, not by name: pstate as "P2", the mask decoded. */
const SHOWN_OTHERWISE = ["pstate", "clockEventReasonsMask"] as const satisfies readonly PassedNumber[];

type Fact = PassedNumber | NvmlFlag;
interface Group {
  readonly [key: string]: Fact | Group;
}
/** The NVML names a group places. */
type Leaves<G> = G extends Fact ? G : { [K in keyof G]: Leaves<G[K]> }[keyof G];
/** A group's values: a flag is boolean | null, a number number | null. */
export type GroupValues<G> = {
  -readonly [K in keyof G]: G[K] extends NvmlFlag
    ? boolean | null
    : G[K] extends Fact
      ? number | null
      : GroupValues<G[K]>;
};
type Placed = Leaves<(typeof GROUPS)[keyof typeof GROUPS]> | (typeof SHOWN_OTHERWISE)[number];

function leaves(g: Group): Fact[] {
  return Object.values(g).flatMap((v) => (typeof v === "string" ? [v] : leaves(v)));
}
const placed: ReadonlySet<string> = new Set([...leaves(GROUPS), ...SHOWN_OTHERWISE]);
const isFlag: ReadonlySet<string> = new Set(NVML_FLAGS);

/** The facts that are top-level keys of a GPU, under their NVML name: every one not placed. */
export const TOP_LEVEL_NUMBERS = PASSED_NUMBERS.filter(
  (f): f is Exclude<PassedNumber, Placed> => !placed.has(f),
);
export const TOP_LEVEL_FLAGS = NVML_FLAGS.filter((f): f is Exclude<NvmlFlag, Placed> => !placed.has(f));

function keys<const K extends readonly string[], S extends z.ZodType>(names: K, schema: S) {
  return Object.fromEntries(names.map((k) => [k, schema])) as { [P in K[number]]: S };
}

function groupSchema<G extends Group>(g: G): z.ZodType<GroupValues<G>> {
  const shape = Object.fromEntries(
    Object.entries(g).map(([k, v]) => [
      k,
      typeof v === "string" ? (isFlag.has(v) ? flag : n) : groupSchema(v),
    ]),
  );
  return z.strictObject(shape) as unknown as z.ZodType<GroupValues<G>>;
}

/** A group's values read from a GPU's facts by name. */
export function groupValues<G extends Group>(
  g: G,
  facts: Readonly<Record<Fact, number | boolean | null>>,
): GroupValues<G> {
  return Object.fromEntries(
    Object.entries(g).map(([k, v]) => [k, typeof v === "string" ? facts[v] : groupValues(v, facts)]),
  ) as GroupValues<G>;
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
  clocks: groupSchema(GROUPS.clocks),
  pstate: z
    .string()
    .regex(/^P\d+$/)
    .nullable(),
  clockEventReasons: z.array(z.string()).nullable(),
  ecc: groupSchema(GROUPS.ecc),
  pcie: groupSchema(GROUPS.pcie),
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
