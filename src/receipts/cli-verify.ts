// What `verify` needs beyond verifyReceiptText: unwrap `{receipt: {...}}` (a coordinator answer
// or a receipts-log line) and a one-line summary of a valid receipt.

import { JsonFloat, type JsonLimits, stringifyJson } from "./json.js";
import { receiptModel } from "./receipt.js";
import { type TextVerifyResult, type VerifyOptions, verifyReceipt, verifyReceiptText } from "./verify.js";

export type { TextVerifyResult };

export const DEFAULT_MAX_LENGTH_BYTES = 1024 * 1024;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Like verifyReceiptText, but a document without `signature` that wraps one in `receipt` is unwrapped. */
export function verifyReceiptDocument(
  text: string,
  opts: VerifyOptions = {},
  limits: JsonLimits = {},
): TextVerifyResult {
  const r = verifyReceiptText(text, opts, limits);
  const doc = r.receipt;
  if (r.code === "missing_signature" && isRecord(doc) && isRecord(doc["receipt"])) {
    const inner = doc["receipt"];
    return { ...verifyReceipt(inner, opts), receipt: inner as TextVerifyResult["receipt"] };
  }
  return r;
}

function field(r: Record<string, unknown>, k: string): string | null {
  const v = r[k];
  if (v === undefined || v === null) return null;
  // JsonFloat prints as Python does (`5.0`); other objects as compact JSON
  if (v instanceof JsonFloat) return v.toString();
  return typeof v === "object" ? stringifyJson(v) : String(v);
}

export function describeReceipt(result: TextVerifyResult): string {
  const r = isRecord(result.receipt) ? result.receipt : {};
  const parts = [`Ed25519 signature by key_id ${result.keyId ?? "?"}`];
  const job = field(r, "job_id");
  if (job) parts.push(`job ${job}`);
  const model = receiptModel(r);
  if (model) parts.push(`model ${model}`);
  const units = field(r, "units");
  if (units) parts.push(`${units} ${field(r, "unit_type") ?? "units"}`);
  const signer = field(r, "miner_id") ?? field(r, "provider");
  if (signer) parts.push(`miner ${signer}`);
  const id = field(r, "receipt_id");
  if (id) parts.push(`receipt ${id}`);
  return parts.join(", ");
}
