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

export function emptyExtra(): GpuExtra {
  const out: Record<string, null> = { clockEventReasons: null };
  for (const k of EXTRA_NUMBERS) out[k] = null;
  for (const k of NVML_FLAGS) out[k] = null;
  return out as unknown as GpuExtra;
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
