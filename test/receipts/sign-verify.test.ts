import { describe, expect, it } from "vitest";
import {
  buildMinerReceipt,
  canonicalJson,
  generateKeyPair,
  type MinerReceipt,
  parseJsonLossless,
  sha256Hex,
  signPayload,
  stringifyJson,
  verifyCoordinatorReceipt,
  verifyReceipt,
  verifyReceiptText,
} from "../../src/receipts/index.js";
import { independentVerify } from "../support/receipts.js";

const key = generateKeyPair();
const other = generateKeyPair();

function receipt(): MinerReceipt {
  return buildMinerReceipt(
    {
      jobId: "job-1",
      minerId: "miner-a",
      model: "tiny",
      prompt: "Grüße 🚀",
      output: "hello world",
      units: 12,
      startedAt: 1_700_000_000,
      completedAt: 1_700_000_002,
      durationMs: 2150,
    },
    key,
  );
}

function withoutSignature(r: MinerReceipt): Record<string, unknown> {
  const { signature: _s, ...rest } = r;
  return rest;
}

describe("miner receipts", () => {
  it("carry the fields of docs/receipts.md and a signature an independent implementation (@noble/ed25519) accepts", () => {
    const r = receipt();
    expect(r).toMatchObject({
      version: "1.0",
      job_id: "job-1",
      miner_id: "miner-a",
      provider: "miner-a",
      model: "tiny",
      prompt_hash: sha256Hex(Buffer.from("Grüße 🚀", "utf8")),
      result_hash: sha256Hex("hello world"),
      units: 12,
      unit_type: "tokens",
      started_at: 1_700_000_000,
      completed_at: 1_700_000_002,
      duration_ms: 2150,
      signature: { alg: "Ed25519", key_id: key.keyId },
    });
    expect(r.prompt_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(r.nonce).toMatch(/^[0-9a-f]{32}$/);
    expect(r.receipt_id).not.toBe(receipt().receipt_id);
    expect(r.signature.sig).toMatch(/^[A-Za-z0-9_-]{86}$/);
    expect(independentVerify(canonicalJson(withoutSignature(r)), r.signature.sig, key.keyId)).toBe(true);
    expect(verifyReceipt(r, { publicKey: key.publicKeyHex })).toEqual({ valid: true, keyId: key.keyId });
    expect(verifyReceipt(r, { keyId: key.keyId }).valid).toBe(true);
  });

  it("refuses input that would make a wrong receipt", () => {
    const base = {
      jobId: "j",
      minerId: "m",
      model: "x",
      prompt: "p",
      output: "o",
      units: 1,
      startedAt: 2,
      completedAt: 2,
      durationMs: 0,
    };
    for (const bad of [
      { units: 1.5 },
      { units: -1 },
      { startedAt: 3 },
      { jobId: "" },
      { durationMs: Number.NaN },
    ]) {
      expect(() => buildMinerReceipt({ ...base, ...bad }, key)).toThrow();
    }
  });

  it("fail verification when any field is changed, added or removed", () => {
    const r = receipt();
    for (const field of Object.keys(withoutSignature(r))) {
      const value = (r as unknown as Record<string, unknown>)[field];
      const changed = typeof value === "number" ? value + 1 : `${String(value)}x`;
      const v = verifyReceipt({ ...r, [field]: changed });
      expect(v, field).toMatchObject({ valid: false, code: "signature_mismatch" });
      expect(v.reason).toMatch(/signature mismatch/);
      const { [field]: _gone, ...removed } = r as unknown as Record<string, unknown>;
      expect(verifyReceipt(removed).valid, `removed ${field}`).toBe(false);
    }
    expect(verifyReceipt({ ...r, extra: 1 }).valid).toBe(false);
    // drop_none: a null field is not part of the signed text, so adding one changes nothing
    expect(verifyReceipt({ ...r, extra: null }).valid).toBe(true);
  });

  it("fail verification when any signature byte is flipped or the key is swapped", () => {
    const r = receipt();
    const sig = Buffer.from(r.signature.sig, "base64url");
    for (let i = 0; i < sig.length; i++) {
      const bad = Buffer.from(sig);
      bad[i]! ^= 0x01;
      expect(
        verifyReceipt({ ...r, signature: { ...r.signature, sig: bad.toString("base64url") } }).valid,
        `byte ${i}`,
      ).toBe(false);
    }
    expect(verifyReceipt({ ...r, signature: { ...r.signature, key_id: other.keyId } })).toMatchObject({
      valid: false,
      code: "signature_mismatch",
    });
    const v = verifyReceipt(r, { publicKey: other.publicKeyHex });
    expect(v).toMatchObject({ valid: false, code: "wrong_key" });
    expect(v.reason).toContain(key.keyId);
    // a receipt re-signed by someone else is valid only for that someone
    const forged = { ...withoutSignature(r), units: 999 };
    const reSigned = { ...forged, signature: signPayload(forged, other) };
    expect(verifyReceipt(reSigned).valid).toBe(true);
    expect(verifyReceipt(reSigned, { publicKey: key.publicKeyHex }).code).toBe("wrong_key");
  });

  it.each([
    [{ signature: undefined }, "missing_signature"],
    [{ signature: "abc" }, "malformed_signature"],
    [{ signature: { alg: "RS256", key_id: "x", sig: "y" } }, "unsupported_alg"],
    [{ signature: { alg: "Ed25519", key_id: "short", sig: "y" } }, "malformed_signature"],
    [{ signature: { alg: "Ed25519", key_id: "$", sig: "y" } }, "malformed_signature"],
  ])("report %j as %s", (patch, code) => {
    expect(verifyReceipt({ ...receipt(), ...patch })).toMatchObject({ valid: false, code });
  });

  it("report a truncated or padded sig as malformed, and an unusable expected key clearly", () => {
    const r = receipt();
    for (const sig of [r.signature.sig.slice(0, -2), `${r.signature.sig}==`, `${r.signature.sig}A`]) {
      expect(verifyReceipt({ ...r, signature: { ...r.signature, sig } }).code).toBe("malformed_signature");
    }
    expect(verifyReceipt(r, { publicKey: "abcd" }).code).toBe("bad_expected_key");
    expect(verifyReceipt([r]).code).toBe("not_object");
  });
});

describe("receipts from raw text (coordinator receipts)", () => {
  const coordinator = generateKeyPair();
  // Numbers JSON.parse would change: the signature is over the text's own values.
  const payload = `{"version":"1.0","receipt_id":"c-1","job_id":"job-1","units":12.0,"price":-0.0,"seq":12345678901234567890,"model":null}`;
  // sign what the text says, as a Python coordinator would
  const signature = signPayload(parseJsonLossless(payload), coordinator);
  const signedText = `${payload.slice(0, -1)},"signature":${JSON.stringify(signature)}}`;

  it("verifies a receipt signed over Python's text of an overflowing float (Infinity)", () => {
    const text = `{"job_id":"j","score":1E400}`;
    // What the Python reference signs for this payload (json.dumps prints inf as Infinity).
    expect(canonicalJson(parseJsonLossless(text))).toBe('{"job_id":"j","score":Infinity}');
    const sig = signPayload(parseJsonLossless(text), coordinator);
    const signed = `${text.slice(0, -1)},"signature":${JSON.stringify(sig)}}`;
    expect(verifyReceiptText(signed, { publicKey: coordinator.publicKeyHex })).toMatchObject({ valid: true });
  });

  it("verify from the raw text, not from JSON.parse", () => {
    expect(verifyReceiptText(signedText, { publicKey: coordinator.publicKeyHex })).toMatchObject({
      valid: true,
    });
    const lossy = JSON.parse(signedText) as unknown;
    expect(verifyReceipt(lossy).valid).toBe(false);
  });

  it("verifyCoordinatorReceipt: null without a key, true with the right key, false with the reason otherwise", () => {
    expect(verifyCoordinatorReceipt(signedText, undefined)).toMatchObject({ verified: null });
    const ok = verifyCoordinatorReceipt(signedText, coordinator.keyId);
    expect(ok.verified).toBe(true);
    expect(stringifyJson(ok.receipt)).toContain('"seq":12345678901234567890');
    expect(verifyCoordinatorReceipt(signedText, other.publicKeyHex)).toMatchObject({
      verified: false,
      reason: expect.stringMatching(/wrong key/),
    });
    const tampered = signedText.replace('"units":12.0', '"units":12');
    expect(verifyCoordinatorReceipt(tampered, coordinator.publicKeyHex)).toMatchObject({
      verified: false,
      reason: expect.stringMatching(/signature mismatch/),
    });
    expect(verifyCoordinatorReceipt("{not json", coordinator.publicKeyHex)).toMatchObject({
      verified: false,
      reason: expect.stringMatching(/not valid JSON/),
      receipt: "{not json",
    });
  });
});
