import { describe, expect, it } from "vitest";
import {
  canonicalJson,
  keyFromSeed,
  parseJsonLossless,
  signPayload,
  verifyReceipt,
  verifyReceiptText,
} from "../../src/receipts/index.js";
import { independentKeyId, independentSign, independentVerify, loadVectors } from "../support/receipts.js";

const vectors = loadVectors();

describe("reference vectors (test/fixtures/receipt-vectors, made by the Python reference)", () => {
  it("has the vectors this suite relies on", () => {
    expect(vectors.length).toBeGreaterThanOrEqual(7);
    expect(vectors[3]!.payload_json).toContain("\u007f");
    expect(vectors[4]!.payload_json).toContain("12345678901234567890");
    expect(vectors[4]!.payload_json).toContain("-0.0");
  });

  describe.each(vectors.map((v, i) => [i, v] as const))("vector %i", (_i, v) => {
    it("canonical text from the raw payload_json, byte for byte", () => {
      expect(canonicalJson(parseJsonLossless(v.payload_json))).toBe(v.canonical);
    });

    it("key and signature byte for byte, also by an independent implementation (@noble/ed25519)", () => {
      const key = keyFromSeed(Buffer.from(v.seed_hex, "hex"));
      expect(key.publicKeyHex).toBe(v.public_key_hex);
      const sig = signPayload(parseJsonLossless(v.payload_json), key);
      expect(sig).toEqual(v.signature);
      expect(independentSign(v.canonical, v.seed_hex)).toBe(v.signature.sig);
      expect(independentKeyId(v.seed_hex)).toBe(v.signature.key_id);
      expect(independentVerify(v.canonical, v.signature.sig, v.signature.key_id)).toBe(true);
    });

    it("verifies from raw text with the signature added, against its public key", () => {
      const text = `${v.payload_json.slice(0, -1)}, "signature": ${JSON.stringify(v.signature)}}`;
      const r = verifyReceiptText(text, { publicKey: v.public_key_hex });
      expect(r).toMatchObject({ valid: true, keyId: v.signature.key_id });
    });
  });

  it("needs the lossless parser: JSON.parse turns vector 5 into a different canonical text", () => {
    const v = vectors[4]!;
    const lossy = JSON.parse(v.payload_json) as Record<string, unknown>;
    expect(canonicalJson(lossy)).not.toBe(v.canonical);
    expect(verifyReceipt({ ...lossy, signature: v.signature }).valid).toBe(false);
  });
});
