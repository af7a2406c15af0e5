// Per-GPU health verdict from what NVML says (docs/gpu-health.md): the Xid table, the service
// counters of a snapshot, sustained hardware slowdown and the operator's drained list. Pure: the
// monitor (health-monitor.ts) feeds it and remembers what events taught.
import { z } from "zod";
import { readExtra } from "./extra.js";
import type { GpuDevice } from "./types.js";

const healthReasonSchema = z.strictObject({
  /** Stable name: "xid_79", "gpu_lost", "retired_pages_pending", "row_remap_failure", ... */
  code: z.string(),
  /** warning: listed, the card still takes jobs; sick: needs a reset or service; lost: gone from the bus. */
  severity: z.enum(["warning", "sick", "lost"]),
  message: z.string(),
  /** When it was first seen (ISO 8601), where known. */
  since: z.iso.datetime().nullable(),
});

/** A GPU's verdict, as `telemetry --json` and /status show it (one shape, its type inferred). */
export const healthVerdictSchema = z.strictObject({
  index: z.number().int(),
  uuid: z.string(),
  /** The worst severity among the reasons (warnings leave it healthy). */
  state: z.enum(["healthy", "sick", "lost"]),
  /** Named in the operator's drained list: takes no job whatever its state. */
  drained: z.boolean(),
  /** state === "healthy" and not drained. */
  takesJobs: z.boolean(),
  reasons: z.array(healthReasonSchema),
});

export type HealthReason = z.infer<typeof healthReasonSchema>;
export type HealthSeverity = HealthReason["severity"];
export type HealthVerdict = z.infer<typeof healthVerdictSchema>;
export type HealthState = HealthVerdict["state"];

export type XidClass = "application" | "sick" | "lost";

// Why each Xid is where it is: docs/gpu-health.md. Application Xids are the ones NVIDIA's device
// plugin skips: a job's own fault (bad kernel, page fault, killed context), the card is fine.
const XIDS: ReadonlyMap<number, { cls: XidClass; name: string }> = new Map([
  [13, { cls: "application", name: "graphics engine exception" }],
  [31, { cls: "application", name: "GPU memory page fault" }],
  [43, { cls: "application", name: "GPU stopped processing (a channel was reset)" }],
  [45, { cls: "application", name: "preemptive cleanup after earlier errors" }],
  [68, { cls: "application", name: "video processor exception" }],
  [109, { cls: "application", name: "context switch timeout" }],
  [48, { cls: "sick", name: "double-bit ECC error" }],
  [61, { cls: "sick", name: "internal micro-controller breakpoint" }],
  [62, { cls: "sick", name: "internal micro-controller halt" }],
  [63, { cls: "sick", name: "ECC page retirement or row remap recorded: needs a reset" }],
  [64, { cls: "sick", name: "ECC page retirement or row remap failure" }],
  [74, { cls: "sick", name: "NVLink error" }],
  [79, { cls: "lost", name: "GPU has fallen off the bus" }],
  [92, { cls: "sick", name: "high single-bit ECC error rate" }],
  [94, { cls: "sick", name: "contained ECC error" }],
  [95, { cls: "sick", name: "uncontained ECC error" }],
  [119, { cls: "sick", name: "GSP RPC timeout" }],
  [120, { cls: "sick", name: "GSP error" }],
  [140, { cls: "sick", name: "unrecovered ECC error" }],
]);

export const APPLICATION_XIDS: readonly number[] = [...XIDS]
  .filter(([, x]) => x.cls === "application")
  .map(([n]) => n);

/** An Xid outside the table is sick, as the device plugin treats every Xid it does not skip. */
export function classifyXid(xid: number, extraApplicationXids: readonly number[] = []): XidClass {
  if (extraApplicationXids.includes(xid)) return "application";
  return XIDS.get(xid)?.cls ?? "sick";
}

export function describeXid(xid: number): string {
  return XIDS.get(xid)?.name ?? "not in the table";
}

/** The clock-event reasons that mean the hardware slows the card down (not a cap or idling). */
export const SLOWDOWN_REASONS: readonly string[] = [
  "hw_slowdown",
  "hw_thermal_slowdown",
  "hw_power_brake_slowdown",
  "sw_thermal_slowdown",
];

export function slowdownReasons(d: GpuDevice): string[] {
  return (readExtra(d).clockEventReasons ?? []).filter((r) => SLOWDOWN_REASONS.includes(r));
}

/** NVML_ERROR_GPU_IS_LOST */
export const NVML_GPU_IS_LOST = 15;

export interface HealthInputs {
  device: GpuDevice;
  /** Conditions events taught about this GPU (sticky: see GpuHealthMonitor). */
  conditions: readonly HealthReason[];
  /** Hardware slowdown seen on every read since `since` (ms since epoch), or null. */
  slowdown: { since: number; reasons: string[] } | null;
  drained: boolean;
  now: number;
  /** How long a slowdown must last to be listed (ms). */
  sustainMs: number;
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** What the counters of one read say; each clears when its counter clears (after a reset). */
export function counterReasons(d: GpuDevice): HealthReason[] {
  const out: HealthReason[] = [];
  if (d.error) {
    const lost = d.error.code === NVML_GPU_IS_LOST;
    out.push({
      code: lost ? "gpu_lost" : "unreadable",
      severity: lost ? "lost" : "sick",
      message: `NVML cannot read this GPU: ${d.error.message}${d.error.code === null ? "" : ` (NVML code ${d.error.code})`}`,
      since: null,
    });
    return out;
  }
  const x = readExtra(d);
  if (x.remapFailure === true)
    out.push({
      code: "row_remap_failure",
      severity: "sick",
      message: "a memory row could not be remapped (no spare rows): the card needs service",
      since: null,
    });
  if (x.remapPending === true)
    out.push({
      code: "row_remap_pending",
      severity: "sick",
      message: "a memory row remap waits for a GPU reset",
      since: null,
    });
  if (x.retiredPagesPending === true)
    out.push({
      code: "retired_pages_pending",
      severity: "sick",
      message: "a retired memory page waits for a GPU reset",
      since: null,
    });
  if (x.eccUncorrectedVolatile !== null && x.eccUncorrectedVolatile > 0)
    out.push({
      code: "uncorrected_ecc",
      severity: "sick",
      message: `${x.eccUncorrectedVolatile} uncorrected (double-bit) ECC error(s) since the last reset`,
      since: null,
    });
  return out;
}

const RANK: Record<HealthSeverity, number> = { warning: 0, sick: 1, lost: 2 };

export function evaluateHealth(i: HealthInputs): HealthVerdict {
  const reasons = [...counterReasons(i.device), ...i.conditions];
  if (i.slowdown && i.now - i.slowdown.since >= i.sustainMs && !i.device.error) {
    reasons.push({
      code: "sustained_slowdown",
      severity: "warning",
      message: `clocks held down by ${i.slowdown.reasons.join(", ")} for ${Math.round((i.now - i.slowdown.since) / 1000)} s`,
      since: iso(i.slowdown.since),
    });
  }
  if (i.drained)
    reasons.push({ code: "drained", severity: "warning", message: "drained by the operator", since: null });
  const worst = reasons.reduce<HealthSeverity>(
    (w, r) => (RANK[r.severity] > RANK[w] ? r.severity : w),
    "warning",
  );
  const state: HealthState = worst === "warning" ? "healthy" : worst;
  return {
    index: i.device.index,
    uuid: i.device.uuid,
    state,
    drained: i.drained,
    takesJobs: state === "healthy" && !i.drained,
    reasons,
  };
}

/** Is this GPU named in the drained list (by UUID, or by index as a decimal string)? */
export function isDrained(drained: ReadonlySet<string>, d: { uuid: string; index: number }): boolean {
  return drained.has(d.uuid) || drained.has(String(d.index));
}

/** Did anything a consumer acts on change (state, drained, the set of reason codes)? */
export function sameVerdict(a: HealthVerdict | undefined, b: HealthVerdict): boolean {
  if (!a) return false;
  const codes = (v: HealthVerdict) =>
    v.reasons
      .map((r) => r.code)
      .sort()
      .join(",");
  return a.state === b.state && a.drained === b.drained && a.index === b.index && codes(a) === codes(b);
}
