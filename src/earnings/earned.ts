// What one accepted result earned, as the miner counts it for /metrics: the coordinator's signed
// units and price when its receipt carries them (what it billed), else the units the result was
// sent with times the unit price asked.
import type { BilledUnits } from "../coordinator/types.js";
import { JsonFloat } from "../receipts/json.js";

/** A JSON number as the lossless parser yields it (number, JsonFloat, bigint), else null. */
export function numberOf(v: unknown): number | null {
  if (typeof v === "number") return Number.isFinite(v) ? v : null;
  if (v instanceof JsonFloat) return Number.isFinite(v.value) ? v.value : null;
  if (typeof v === "bigint") return Number(v);
  return null;
}

export interface Earned {
  units?: number;
  amount?: number;
}

export function earnedBy(billed: BilledUnits | undefined, coordinatorReceipt: unknown): Earned {
  const r =
    typeof coordinatorReceipt === "object" &&
    coordinatorReceipt !== null &&
    !Array.isArray(coordinatorReceipt)
      ? (coordinatorReceipt as Record<string, unknown>)
      : {};
  const units = numberOf(r["units"]) ?? billed?.units ?? null;
  const signedPrice = numberOf(r["price"]);
  const asked = billed && billed.unitPrice !== null ? billed.units * billed.unitPrice : null;
  const amount = signedPrice ?? asked;
  const out: Earned = {};
  if (units !== null && units >= 0) out.units = units;
  if (amount !== null && amount >= 0) out.amount = amount;
  return out;
}

/**
 * What a job's result is billed at, from the miner's own receipt (its duration_ms: the result's
 * GPU seconds, as pricedMetrics sends them) and the unit price sent (null: the dialect sends none).
 */
export function billedFromMinerReceipt(
  receipt: unknown,
  unitPrice: number | null,
): { units: number; unit_type: string; unit_price: number | null } | undefined {
  if (typeof receipt !== "object" || receipt === null) return undefined;
  const ms = numberOf((receipt as Record<string, unknown>)["duration_ms"]);
  if (ms === null || ms < 0) return undefined;
  return { units: ms / 1000, unit_type: "gpu_seconds", unit_price: unitPrice };
}
