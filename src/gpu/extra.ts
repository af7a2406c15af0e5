// The extra per-device facts both sources may fill (GpuDevice.extra), with a typed reader.
import type { GpuDevice } from "./types.js";

export interface GpuExtra {
  memoryReservedMiB: number | null;
  powerEnforcedLimitW: number | null;
  /** Energy since the driver loaded, millijoules (DCGM's unit). */
  totalEnergyMj: number | null;
  smClockMHz: number | null;
  memClockMHz: number | null;
  smClockMaxMHz: number | null;
  memClockMaxMHz: number | null;
  fanSpeedPct: number | null;
  /** 0..15 (P0 = fastest). */
  pstate: number | null;
  clockEventReasonsMask: number | null;
  clockEventReasons: string[] | null;
  eccModeCurrent: boolean | null;
  eccModePending: boolean | null;
  eccUncorrectedVolatile: number | null;
  /** Service counters (docs/gpu-health.md): null where the card or driver has none. */
  retiredPagesPending: boolean | null;
  remappedRowsCorrectable: number | null;
  remappedRowsUncorrectable: number | null;
  remapPending: boolean | null;
  remapFailure: boolean | null;
  pcieLinkGen: number | null;
  pcieLinkWidth: number | null;
  pcieLinkGenMax: number | null;
  pcieLinkWidthMax: number | null;
  pcieTxKBs: number | null;
  pcieRxKBs: number | null;
}

export const EXTRA_KEYS = [
  "memoryReservedMiB",
  "powerEnforcedLimitW",
  "totalEnergyMj",
  "smClockMHz",
  "memClockMHz",
  "smClockMaxMHz",
  "memClockMaxMHz",
  "fanSpeedPct",
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
] as const satisfies readonly (keyof GpuExtra)[];

export function emptyExtra(): GpuExtra {
  return {
    memoryReservedMiB: null,
    powerEnforcedLimitW: null,
    totalEnergyMj: null,
    smClockMHz: null,
    memClockMHz: null,
    smClockMaxMHz: null,
    memClockMaxMHz: null,
    fanSpeedPct: null,
    pstate: null,
    clockEventReasonsMask: null,
    clockEventReasons: null,
    eccModeCurrent: null,
    eccModePending: null,
    eccUncorrectedVolatile: null,
    retiredPagesPending: null,
    remappedRowsCorrectable: null,
    remappedRowsUncorrectable: null,
    remapPending: null,
    remapFailure: null,
    pcieLinkGen: null,
    pcieLinkWidth: null,
    pcieLinkGenMax: null,
    pcieLinkWidthMax: null,
    pcieTxKBs: null,
    pcieRxKBs: null,
  };
}

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);
const bool = (v: unknown): boolean | null => (typeof v === "boolean" ? v : null);

/** The device's extra facts, every one validated; anything absent or malformed is null. */
export function readExtra(d: GpuDevice): GpuExtra {
  const e = d.extra ?? {};
  const out = emptyExtra();
  for (const k of EXTRA_KEYS) out[k] = num(e[k]);
  out.eccModeCurrent = bool(e["eccModeCurrent"]);
  out.eccModePending = bool(e["eccModePending"]);
  out.retiredPagesPending = bool(e["retiredPagesPending"]);
  out.remapPending = bool(e["remapPending"]);
  out.remapFailure = bool(e["remapFailure"]);
  const reasons = e["clockEventReasons"];
  out.clockEventReasons =
    Array.isArray(reasons) && reasons.every((r) => typeof r === "string") ? (reasons as string[]) : null;
  return out;
}
