// `upstreamQuirks`: the rules of the real AITBC coordinator (oib/AITBC apps/coordinator-api:
// routers/miner.py, services/miners.py, services/jobs.py, services/receipts.py; docs/protocols.md#how-the-upstream-coordinator-behaves), so
// the miner can be tested against what it will meet rather than against our stricter reference.
import { randomBytes } from "node:crypto";
import { HttpFail } from "./http.js";
import { asObj, type CoordinatorRules } from "./rules.js";

type Obj = Record<string, unknown>;

/** The body of upstream's catch-all exception handler (main.py, exceptions.ErrorResponse). */
function internalErrorBody(): unknown {
  return {
    error: {
      code: "INTERNAL_SERVER_ERROR",
      message: "An unexpected error occurred",
      status: 500,
      details: [{ field: "internal", message: "Internal error - see server logs", code: "INTERNAL_ERROR" }],
    },
    // Python's `datetime.now(UTC).isoformat() + "Z"`, offset and all.
    timestamp: new Date().toISOString().replace("Z", "000+00:00Z"),
    request_id: null,
  };
}

/** receipts._first_present */
function firstPresent(values: unknown[]): unknown {
  return values.find((v) => v !== null && v !== undefined);
}

/** receipts._coerce_float (Python float() of a number, numeric string or bool). */
function toFloat(v: unknown): number | null {
  if (typeof v === "boolean") return v ? 1 : 0;
  if (typeof v !== "number" && (typeof v !== "string" || v.trim() === "")) return null;
  const n = Number(v);
  return Number.isNaN(n) ? null : n;
}

/** ReceiptService.create_receipt's unit count: explicit units, else duration, else 0 (GPU seconds). */
function receiptUnits(metrics: Obj, result: Obj): number {
  const units = toFloat(firstPresent([metrics["units"], result["units"]]));
  if (units !== null) return Math.max(0, units);
  let durationMs = toFloat(metrics["duration_ms"]) ?? toFloat(result["duration_ms"]);
  if (durationMs !== null && durationMs < 0) durationMs = null;
  if (durationMs !== null) return durationMs / 1000;
  const seconds = toFloat(
    firstPresent([
      metrics["duration_seconds"],
      metrics["compute_time"],
      result["execution_time"],
      result["duration"],
    ]),
  );
  return seconds === null ? 0 : Math.max(0, seconds);
}

/** submit_result's metrics: duration_ms from the result's execution_time when absent. */
function routerMetrics(metrics: unknown, result: Obj): Obj {
  const m = { ...asObj(metrics) };
  if (m["duration_ms"] === undefined || m["duration_ms"] === null) {
    const t = toFloat(result["execution_time"]);
    if (t !== null && t > 0) m["duration_ms"] = Math.trunc(t * 1000);
  }
  return m;
}

/** A UTF-16 surrogate without its pair: Python cannot encode it as UTF-8. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function hasLoneSurrogate(v: unknown): boolean {
  if (typeof v === "string") return LONE_SURROGATE.test(v);
  if (Array.isArray(v)) return v.some(hasLoneSurrogate);
  if (typeof v === "object" && v !== null)
    return Object.entries(v).some(([k, x]) => LONE_SURROGATE.test(k) || hasLoneSurrogate(x));
  return false;
}

const POST_SIGNING = { zk_status: "not_required", tee_status: "not_required" };

export const upstreamRules: CoordinatorRules = {
  // Only /health is mounted; /v1/health falls through to 404.
  healthPaths: new Set(["/health"]),
  // No lease, no heartbeat timeout: RUNNING stays RUNNING until a result or failure arrives.
  leases: false,
  // MinerService.poll raises KeyError, which the poll route does not catch.
  unknownMinerPoll: () => new HttpFail(500, "miner not registered", internalErrorBody()),
  // `inflight` is a counter: +1 per poll hand-over, -1 per result, set by heartbeats, 0 on register.
  hasSlot: (m) => !(m.concurrency > 0 && (m.inflight ?? 0) >= m.concurrency),
  heartbeat(m, inflight) {
    m.inflight = inflight ?? 0;
  },
  assigned(m) {
    m.inflight = (m.inflight ?? 0) + 1;
  },
  resultAccepted(j, m) {
    j.error = null;
    if (m) m.inflight = Math.max(0, (m.inflight ?? 0) - 1);
  },
  // Any job, any state (CANCELED too), any miner: each submission completes it again with a new receipt.
  acceptsResult: () => true,
  // The poll has committed the hand-over (RUNNING, inflight +1) when the response's UTF-8
  // encoding fails on a lone surrogate: the catch-all handler answers 500 and the job stays
  // RUNNING on that miner.
  handOverFails: (j) =>
    hasLoneSurrogate(j.payload) || hasLoneSurrogate(j.constraints)
      ? new HttpFail(500, "response not serialisable", internalErrorBody())
      : null,
  // JobService.fail_job: terminal whatever the state or code; only the message is stored, and the
  // reporter becomes the job's miner. The miner's inflight is NOT released (only /result does).
  failVerdict(j, minerId, { message }) {
    j.minerId = minerId;
    return { requeue: false, error: { code: null, message } };
  },
  receiptPayload(j, minerId, result, metrics, nowMs) {
    const m = routerMetrics(metrics, result);
    const units = receiptUnits(m, result);
    const unitType = firstPresent([m["unit_type"], result["unit_type"]]) ?? "gpu_seconds";
    const unitPrice = Math.max(0, toFloat(firstPresent([m["unit_price"], result["unit_price"]])) ?? 0.02);
    const price =
      toFloat(firstPresent(["price", "aitbc_earned", "cost"].flatMap((k) => [m[k], result[k]]))) ??
      Math.round(units * unitPrice * 1e6) / 1e6;
    if (Object.keys(m).length > 0) m["duration_ms"] = Math.trunc(units * 1000);
    const now = Math.floor(nowMs / 1000);
    return {
      version: "1.0",
      receipt_id: randomBytes(16).toString("hex"),
      job_id: j.jobId,
      provider: minerId,
      // `client` is the submitting client's id upstream; local jobs have none (None is not signed).
      status: "COMPLETED",
      units,
      unit_type: unitType,
      unit_price: unitPrice,
      price: Math.max(0, price),
      completed_at: now,
      started_at: Math.floor(nowMs / 1000 - units),
      // The model is only here: the receipt has no top-level `model`.
      metadata: { job_payload: j.payload, job_constraints: j.constraints, result, metrics: m },
    };
  },
  // submit_result adds the ZK and TEE verdicts after signing, so they are not covered by the signature.
  afterSigning(receipt) {
    if (typeof receipt !== "string") return { ...receipt, ...POST_SIGNING };
    const text = receipt.trimEnd();
    const extra = JSON.stringify(POST_SIGNING).slice(1);
    return `${text.slice(0, -1)}${text.endsWith("{}") ? "" : ","}${extra}`;
  },
  // MinerService.deregister marks the miner OFFLINE and keeps it (and its RUNNING jobs) as they are.
  deregister(state, minerId) {
    const m = state.miners.get(minerId);
    if (!m) throw new HttpFail(404, "miner not found");
    m.status = "OFFLINE";
    return { json: { miner_id: minerId, status: "deregistered" }, requeued: 0 };
  },
};
