// The miner's own receipt for a completed job (docs/receipts.md): hashes of prompt and output, token
// units, integer unix-second times; signed over everything but `signature`.
import { randomBytes, randomUUID } from "node:crypto";
import { type ReceiptSignature, type SigningKey, sha256Hex, signPayload } from "./crypto.js";

export interface MinerReceiptInput {
  jobId: string;
  minerId: string;
  model: string;
  prompt: string;
  output: string;
  /** Tokens produced. */
  units: number;
  /** Unix seconds. */
  startedAt: number;
  completedAt: number;
  durationMs: number;
}

export interface MinerReceipt {
  version: "1.0";
  receipt_id: string;
  job_id: string;
  miner_id: string;
  provider: string;
  model: string;
  prompt_hash: string;
  result_hash: string;
  units: number;
  unit_type: "tokens";
  started_at: number;
  completed_at: number;
  duration_ms: number;
  nonce: string;
  signature: ReceiptSignature;
}

export class ReceiptInputError extends Error {
  override readonly name = "ReceiptInputError";
}

function nonNegativeInt(name: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    throw new ReceiptInputError(`${name} must be a non-negative integer, got ${String(v)}`);
  }
  return v;
}

function nonEmpty(name: string, v: unknown): string {
  if (typeof v !== "string" || v.length === 0)
    throw new ReceiptInputError(`${name} must be a non-empty string`);
  return v;
}

export function buildMinerReceipt(
  input: MinerReceiptInput,
  key: SigningKey,
  ids: { receiptId?: string; nonce?: string } = {},
): MinerReceipt {
  if (typeof input.prompt !== "string" || typeof input.output !== "string") {
    throw new ReceiptInputError("prompt and output must be strings");
  }
  const startedAt = nonNegativeInt("startedAt", input.startedAt);
  const completedAt = nonNegativeInt("completedAt", input.completedAt);
  if (completedAt < startedAt) throw new ReceiptInputError("completedAt is before startedAt");
  const payload: Omit<MinerReceipt, "signature"> = {
    version: "1.0",
    receipt_id: ids.receiptId ?? randomUUID(),
    job_id: nonEmpty("jobId", input.jobId),
    miner_id: nonEmpty("minerId", input.minerId),
    provider: input.minerId,
    model: nonEmpty("model", input.model),
    prompt_hash: sha256Hex(input.prompt),
    result_hash: sha256Hex(input.output),
    units: nonNegativeInt("units", input.units),
    unit_type: "tokens",
    started_at: startedAt,
    completed_at: completedAt,
    duration_ms: nonNegativeInt("durationMs", input.durationMs),
    nonce: ids.nonce ?? randomBytes(16).toString("hex"),
  };
  return { ...payload, signature: signPayload(payload, key) };
}

/**
 * The model a receipt is for: top-level `model` (the miner's receipts), else the job payload's
 * (upstream's coordinator receipts carry it only in metadata.job_payload.model).
 */
export function receiptModel(r: Record<string, unknown>): string | null {
  if (typeof r["model"] === "string") return r["model"];
  const meta = r["metadata"];
  const payload = isObject(meta) ? meta["job_payload"] : null;
  return isObject(payload) && typeof payload["model"] === "string" ? payload["model"] : null;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
