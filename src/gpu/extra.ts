// The extra per-device facts both sources may fill (GpuDevice.extra), with a typed reader. Its
// shape comes from the one list of NVML facts (nvml-fields.ts): every fact that is not a core
// GpuDevice field, under its NVML name, plus the few held in another unit or decoded.
import { NVML_FLAGS, type NvmlFlag, PASSED_NUMBERS, type PassedNumber } from "./nvml-fields.js";
import type { GpuDevice } from "./types.js";

/** Extras that are not an NVML fact as NVML gives it. */
interface DerivedExtra {
  /** From memoryReservedBytes. */
  memoryReservedMiB: number | null;
  /** From powerEnforcedLimitMw. */
  powerEnforcedLimitW: number | null;
  /** clockEventReasonsMask decoded (src/gpu/reasons.ts). */
  clockEventReasons: string[] | null;
}

export type GpuExtra = { [K in PassedNumber]: number | null } & {
  [K in NvmlFlag]: boolean | null;
} & DerivedExtra;

const DERIVED_NUMBERS = [
  "memoryReservedMiB",
  "powerEnforcedLimitW",
] as const satisfies readonly (keyof DerivedExtra)[];

/** Every numeric extra, by name. */
export const EXTRA_NUMBERS: readonly (PassedNumber | (typeof DERIVED_NUMBERS)[number])[] = [
  ...DERIVED_NUMBERS,
  ...PASSED_NUMBERS,
];

// Every key present from the start, as one literal generated once from the lists: the stores
// that fill an extra then find their property (an object grown key by key from a list gets no
// fast shape, and filling one cost ~4 us per GPU instead of ~0.3).
const EXTRA_KEYS = [...EXTRA_NUMBERS, ...NVML_FLAGS, "clockEventReasons"];
if (!EXTRA_KEYS.every((k) => /^[A-Za-z][A-Za-z0-9]*$/.test(k))) throw new Error("bad extra key");
const makeEmpty = new Function(
  `return () => ({ ${EXTRA_KEYS.map((k) => `${k}: null`).join(", ")} });`,
)() as () => GpuExtra;

export function emptyExtra(): GpuExtra {
  return makeEmpty();
}

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);
const bool = (v: unknown): boolean | null => (typeof v === "boolean" ? v : null);

/** The device's extra facts, every one validated; anything absent or malformed is null. */
export function readExtra(d: GpuDevice): GpuExtra {
  const e = d.extra ?? {};
  const out = emptyExtra();
  for (const k of EXTRA_NUMBERS) out[k] = num(e[k]);
  for (const k of NVML_FLAGS) out[k] = bool(e[k]);
  const reasons = e["clockEventReasons"];
  out.clockEventReasons =
    Array.isArray(reasons) && reasons.every((r) => typeof r === "string") ? (reasons as string[]) : null;
  return out;
}
