// Shared pieces of the receipts suites: the reference vectors and node:crypto as an independent
// Ed25519 implementation.
import { createPrivateKey, createPublicKey, sign as cryptoSign, verify as cryptoVerify } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** Made by the Python reference implementation; see test/fixtures/receipt-vectors/README.md. */
export const vectorsPath = join(repoRoot, "test", "fixtures", "receipt-vectors", "receipts.json");

export interface Vector {
  payload_json: string;
  canonical: string;
  seed_hex: string;
  public_key_hex: string;
  signature: { alg: string; key_id: string; sig: string };
}

export function loadVectors(): Vector[] {
  const doc = JSON.parse(readFileSync(vectorsPath, "utf8")) as { vectors: Vector[] };
  return doc.vectors;
}

/** Verify with node:crypto (OpenSSL), not @noble: the key is given as its base64url key_id. */
export function nodeVerify(message: string, sigB64url: string, keyId: string): boolean {
  const key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: keyId }, format: "jwk" });
  return cryptoVerify(null, Buffer.from(message, "utf8"), key, Buffer.from(sigB64url, "base64url"));
}

/** Sign with node:crypto from a 32-byte seed (Ed25519 is deterministic: same bytes as any signer). */
export function nodeSign(message: string, seedHex: string, keyId: string): string {
  const key = createPrivateKey({
    key: { kty: "OKP", crv: "Ed25519", x: keyId, d: Buffer.from(seedHex, "hex").toString("base64url") },
    format: "jwk",
  });
  return cryptoSign(null, Buffer.from(message, "utf8"), key).toString("base64url");
}
