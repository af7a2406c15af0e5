// Receipt verification: the signature object sits under `signature`; it covers every other
// field (bar `attestations`, which the reference appends after signing).
import { fromBase64Url, KeyFormatError, parsePublicKey, SIGNATURE_ALG, verifyBytes } from "./crypto.js";
import { canonicalJson, JsonError, type JsonLimits, type JsonValue, parseJsonLossless } from "./json.js";

export type VerifyFailure =
  | "unparsable"
  | "not_object"
  | "missing_signature"
  | "malformed_signature"
  | "unsupported_alg"
  | "bad_expected_key"
  | "wrong_key"
  | "not_canonicalizable"
  | "signature_mismatch";

export interface VerifyResult {
  valid: boolean;
  /** Why it is not valid (absent when valid). */
  reason?: string;
  code?: VerifyFailure;
  /** key_id of the signer, when the signature object could be read. */
  keyId?: string;
  /**
   * Valid, but only once these fields were left out: fields the upstream coordinator adds after
   * signing (see POST_SIGNING_FIELDS). Everything else in the receipt is covered by the signature.
   */
  unsignedFields?: string[];
}

export interface VerifyOptions {
  /** Expected signer: 64 hex digits or base64url key_id. Absent: any self-consistent key. */
  publicKey?: string | undefined;
  /** Expected signer as a base64url key_id. */
  keyId?: string | undefined;
}

/** Fields outside the signed payload. */
const UNSIGNED_FIELDS = new Set(["signature", "attestations"]);

/**
 * Fields the upstream AITBC coordinator sets on its receipt after signing it (oib/AITBC
 * apps/coordinator-api .../routers/miner.py: _attach_zk_proof and _attach_tee_attestation run
 * after ReceiptService.create_receipt signed the payload), so its own verifier rejects its
 * receipts. A receipt that verifies once exactly these are left out is reported valid with them
 * named; any other difference still makes it invalid.
 */
export const POST_SIGNING_FIELDS = ["zk_status", "zk_proof", "tee_status", "tee_attestation_id", "tee_quote"];

function fail(code: VerifyFailure, reason: string, keyId?: string): VerifyResult {
  return keyId === undefined ? { valid: false, code, reason } : { valid: false, code, reason, keyId };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The signed payload of a receipt: every field but `signature`, `attestations` and `leaveOut`. */
export function signedPayload(
  receipt: Record<string, unknown>,
  leaveOut: readonly string[] = [],
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(receipt)) {
    if (!UNSIGNED_FIELDS.has(k) && !leaveOut.includes(k)) {
      Object.defineProperty(out, k, {
        value: receipt[k],
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
  }
  return out;
}

export function verifyReceipt(receipt: unknown, opts: VerifyOptions = {}): VerifyResult {
  if (!isRecord(receipt)) return fail("not_object", "the receipt is not a JSON object");
  const sig = receipt["signature"];
  if (sig === undefined || sig === null) return fail("missing_signature", "the receipt has no signature");
  if (!isRecord(sig)) return fail("malformed_signature", "malformed signature: not an object");
  if (sig["alg"] !== SIGNATURE_ALG) {
    return fail(
      "unsupported_alg",
      `unsupported signature algorithm ${JSON.stringify(sig["alg"] ?? null)} (only ${SIGNATURE_ALG})`,
    );
  }
  const keyIdText = sig["key_id"];
  const sigText = sig["sig"];
  const publicKey = typeof keyIdText === "string" ? fromBase64Url(keyIdText, 32) : null;
  if (!publicKey || typeof keyIdText !== "string") {
    return fail("malformed_signature", "malformed signature: key_id is not base64url of a 32-byte key");
  }
  const signature = typeof sigText === "string" ? fromBase64Url(sigText, 64) : null;
  if (!signature) {
    return fail("malformed_signature", "malformed signature: sig is not base64url of 64 bytes", keyIdText);
  }

  for (const expected of [opts.publicKey, opts.keyId]) {
    if (expected === undefined) continue;
    let want: Uint8Array;
    try {
      want = parsePublicKey(expected);
    } catch (err) {
      if (err instanceof KeyFormatError) return fail("bad_expected_key", `expected key: ${err.message}`);
      throw err;
    }
    if (Buffer.compare(Buffer.from(want), Buffer.from(publicKey)) !== 0) {
      return fail(
        "wrong_key",
        `wrong key: signed by key_id ${keyIdText}, expected ${Buffer.from(want).toString("base64url")}`,
        keyIdText,
      );
    }
  }

  const matches = (leaveOut: readonly string[]): boolean =>
    verifyBytes(
      signature,
      new TextEncoder().encode(canonicalJson(signedPayload(receipt, leaveOut))),
      publicKey,
    );
  try {
    if (matches([])) return { valid: true, keyId: keyIdText };
    const added = POST_SIGNING_FIELDS.filter((k) => Object.hasOwn(receipt, k));
    if (added.length > 0 && matches(added)) return { valid: true, keyId: keyIdText, unsignedFields: added };
  } catch (err) {
    if (err instanceof JsonError) {
      return fail("not_canonicalizable", `cannot canonicalize the receipt: ${err.message}`, keyIdText);
    }
    throw err;
  }
  return fail(
    "signature_mismatch",
    "signature mismatch: the receipt was changed after signing, or the signature is not by key_id " +
      keyIdText,
    keyIdText,
  );
}

/** "valid" or "valid, unsigned fields: zk_status, tee_status": how a valid outcome is shown. */
export function validityText(r: Pick<VerifyResult, "unsignedFields">): string {
  return r.unsignedFields && r.unsignedFields.length > 0
    ? `valid, unsigned fields: ${r.unsignedFields.join(", ")}`
    : "valid";
}

export interface TextVerifyResult extends VerifyResult {
  /** The parsed receipt (lossless), or null when the text is not JSON. */
  receipt: JsonValue | null;
}

/** Verify from raw JSON text, so `1.0`, `-0.0` and big integers keep the bytes that were signed. */
export function verifyReceiptText(
  text: string,
  opts: VerifyOptions = {},
  limits: JsonLimits = {},
): TextVerifyResult {
  let receipt: JsonValue;
  try {
    receipt = parseJsonLossless(text.startsWith("\uFEFF") ? text.slice(1) : text, limits);
  } catch (err) {
    if (err instanceof JsonError) {
      return { valid: false, code: "unparsable", reason: `not valid JSON: ${err.message}`, receipt: null };
    }
    throw err;
  }
  return { ...verifyReceipt(receipt, opts), receipt };
}

export interface CoordinatorReceiptCheck {
  /** null: no coordinator key configured, so not checked. */
  verified: boolean | null;
  reason?: string | undefined;
  /** Valid, with these fields added after signing (upstream's zk_status, tee_status...). */
  unsignedFields?: string[] | undefined;
  receipt: unknown;
}

/** Check a coordinator-signed receipt from its raw text against the configured coordinator key. */
export function verifyCoordinatorReceipt(
  rawText: string,
  coordinatorKey: string | undefined,
): CoordinatorReceiptCheck {
  if (coordinatorKey === undefined || coordinatorKey === "") {
    let receipt: unknown = rawText;
    try {
      receipt = parseJsonLossless(rawText);
    } catch {
      // keep the raw text: the log still shows what arrived
    }
    return { verified: null, reason: "no coordinator key configured", receipt };
  }
  const r = verifyReceiptText(rawText, { publicKey: coordinatorKey });
  if (!r.valid) return { verified: false, reason: r.reason, receipt: r.receipt ?? rawText };
  return r.unsignedFields
    ? { verified: true, reason: validityText(r), unsignedFields: r.unsignedFields, receipt: r.receipt }
    : { verified: true, receipt: r.receipt };
}
