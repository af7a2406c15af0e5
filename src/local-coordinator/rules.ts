// The policy points where the local coordinator can behave either as the reference semantics of docs/protocols.md
// (leases, exactly-once completion, requeue on a restart) or as the real upstream coordinator
// (docs/protocols.md#how-the-upstream-coordinator-behaves, see upstream.ts). core.ts and the route modules call these hooks; everything else
// is shared.
import { randomUUID } from "node:crypto";
import { HttpFail } from "./http.js";
import type { CoordinatorState, LocalJob, LocalMiner } from "./state.js";

type Obj = Record<string, unknown>;

export interface FailVerdict {
  requeue: boolean;
  error: { code: string | null; message: string };
}

export interface CoordinatorRules {
  /** GET paths that answer 200 when up. */
  readonly healthPaths: ReadonlySet<string>;
  /** RUNNING jobs past their lease are requeued (leaseTimeoutMs applies). */
  readonly leases: boolean;
  /** The answer to a poll from a miner that is not registered. */
  unknownMinerPoll(): HttpFail;
  /** May this miner be handed one more job now? */
  hasSlot(m: LocalMiner, state: CoordinatorState): boolean;
  heartbeat(m: LocalMiner, inflight: number | undefined): void;
  assigned(m: LocalMiner): void;
  /** A result for `j` was accepted from miner `m` (undefined when not registered). */
  resultAccepted(j: LocalJob, m: LocalMiner | undefined): void;
  /** False: the submission is a refused repeat, or comes for a cancelled job (409). */
  acceptsResult(j: LocalJob): boolean;
  /**
   * The answer a poll that has just handed `j` over gives instead of the job, or null to answer
   * with it: upstream stores the hand-over, then fails to serialise some payloads (a 500).
   */
  handOverFails(j: LocalJob): HttpFail | null;
  /** What a reported failure does to the job; throws when the report is refused. */
  failVerdict(
    j: LocalJob,
    minerId: string,
    b: { code: string; message: string },
    requeueOnFail: boolean,
  ): FailVerdict;
  /** The coordinator receipt's signed fields. */
  receiptPayload(j: LocalJob, minerId: string, result: Obj, metrics: unknown, nowMs: number): Obj;
  /** Fields added to a signed receipt (raw JSON text or object) after signing. */
  afterSigning(receipt: string | Obj): string | Obj;
  /** Deregister (DELETE /v1/miners/{id}); returns the answer and how many jobs were requeued. */
  deregister(state: CoordinatorState, minerId: string): { json: unknown; requeued: number };
}

const REQUEUE_CODES = new Set(["shutting_down", "miner_restarted"]);

/** Upstream's default unit price (ReceiptService.create_receipt), used when a result names none. */
export const DEFAULT_UNIT_PRICE = 0.02;

/** units x unit price, rounded to 6 places as upstream rounds it; null without numeric units. */
export function billOf(units: unknown, unitPrice: unknown): { unitPrice: number; price: number } | null {
  if (typeof units !== "number" || !Number.isFinite(units)) return null;
  const p =
    typeof unitPrice === "number" && Number.isFinite(unitPrice) ? Math.max(0, unitPrice) : DEFAULT_UNIT_PRICE;
  return { unitPrice: p, price: Math.round(Math.max(0, units) * p * 1e6) / 1e6 };
}

export function asObj(v: unknown): Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : {};
}

/** docs/protocols.md semantics: slots counted from RUNNING jobs, completion exactly once. */
export const referenceRules: CoordinatorRules = {
  healthPaths: new Set(["/health", "/v1/health"]),
  leases: true,
  unknownMinerPoll: () => new HttpFail(404, "miner not registered"),
  hasSlot: (m, state) => state.runningFor(m.minerId) < m.concurrency,
  heartbeat: () => {},
  assigned: () => {},
  resultAccepted: () => {},
  acceptsResult: (j) => j.state !== "COMPLETED" && j.state !== "FAILED" && j.state !== "CANCELED",
  handOverFails: () => null,
  failVerdict(j, _minerId, { code, message }, requeueOnFail) {
    if (j.state !== "RUNNING") throw new HttpFail(409, `job is ${j.state.toLowerCase()}, not running`);
    return { requeue: requeueOnFail || REQUEUE_CODES.has(code), error: { code, message } };
  },
  receiptPayload(j, minerId, _result, metrics, nowMs) {
    const m = asObj(metrics);
    const mr = asObj(j.minerReceipt);
    const units = typeof m["units"] === "number" ? m["units"] : (mr["units"] ?? null);
    const bill = billOf(units, m["unit_price"]);
    const payload: Obj = {
      version: "1.0",
      receipt_id: randomUUID(),
      job_id: j.jobId,
      miner_id: minerId,
      model: typeof j.payload["model"] === "string" ? j.payload["model"] : null,
      // The units the miner priced (GPU seconds from an aitbc miner), else its receipt's (tokens).
      units,
      unit_type:
        typeof m["units"] === "number"
          ? typeof m["unit_type"] === "string"
            ? m["unit_type"]
            : "gpu_seconds"
          : (mr["unit_type"] ?? null),
      // Billed as upstream bills: units x the unit price the miner sent (0.02 when none).
      unit_price: bill?.unitPrice ?? null,
      price: bill?.price ?? null,
      miner_receipt_id: mr["receipt_id"] ?? null,
      result_hash: mr["result_hash"] ?? null,
      completed_at: Math.floor(nowMs / 1000),
    };
    // Leave out what is not known rather than signing nulls.
    for (const [k, v] of Object.entries(payload)) if (v === null || v === undefined) delete payload[k];
    return payload;
  },
  afterSigning: (receipt) => receipt,
  deregister(state, minerId) {
    if (!state.miners.delete(minerId)) throw new HttpFail(404, "miner not registered");
    let requeued = 0;
    for (const j of state.jobs.values()) {
      if (j.state === "RUNNING" && j.minerId === minerId) {
        state.requeue(j);
        requeued++;
      }
    }
    return { json: { status: "ok" }, requeued };
  },
};
