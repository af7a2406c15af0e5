// Shared pieces of the receipts suites: the reference vectors and @noble/ed25519 (pure JS) as an
// Ed25519 implementation independent of the miner's, which signs and verifies with OpenSSL.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as ed from "@noble/ed25519";
import { sha512 } from "@noble/hashes/sha2.js";

// noble's sync API needs a SHA-512 (copied into a fresh ArrayBuffer-backed array, as its hook asks).
ed.hashes.sha512 = (msg) => new Uint8Array(sha512(msg));

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

/** Verify with @noble/ed25519, RFC 8032 strict (zip215 off): the key is given as its base64url key_id. */
export function independentVerify(message: string, sigB64url: string, keyId: string): boolean {
  try {
    return ed.verify(
      Buffer.from(sigB64url, "base64url"),
      Buffer.from(message, "utf8"),
      Buffer.from(keyId, "base64url"),
      { zip215: false },
    );
  } catch {
    return false;
  }
}

/** Sign with @noble/ed25519 from a 32-byte seed (Ed25519 is deterministic: same bytes as any signer). */
export function independentSign(message: string, seedHex: string): string {
  return Buffer.from(ed.sign(Buffer.from(message, "utf8"), Buffer.from(seedHex, "hex"))).toString(
    "base64url",
  );
}

/** The public key @noble/ed25519 derives from a seed, as a base64url key_id. */
export function independentKeyId(seedHex: string): string {
  return Buffer.from(ed.getPublicKey(Buffer.from(seedHex, "hex"))).toString("base64url");
}
