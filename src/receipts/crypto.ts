// Ed25519 keys and signature objects `{alg, key_id, sig}` (base64url, no padding), as the AITBC
// reference signer makes them. @noble/ed25519 v3 needs a sync SHA-512 for its sync API.
import { createHash, randomBytes } from "node:crypto";
import * as ed from "@noble/ed25519";
import { sha512 } from "@noble/hashes/sha2.js";
import { canonicalJson } from "./json.js";

// (copied into a fresh ArrayBuffer-backed array: the type noble's hook asks for)
ed.hashes.sha512 = (msg) => new Uint8Array(sha512(msg));

export const SIGNATURE_ALG = "Ed25519";

/** An Ed25519 key pair. `secretKey` is the 32-byte seed: keep it out of logs and errors. */
export interface SigningKey {
  secretKey: Uint8Array;
  publicKey: Uint8Array;
  publicKeyHex: string;
  /** base64url (unpadded) of the public key: the `key_id` in signatures. */
  keyId: string;
}

export interface ReceiptSignature {
  alg: typeof SIGNATURE_ALG;
  key_id: string;
  sig: string;
}

export class KeyFormatError extends Error {
  override readonly name = "KeyFormatError";
}

export function sha256Hex(text: string | Uint8Array): string {
  return createHash("sha256").update(text).digest("hex");
}

export function toBase64Url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64url");
}

/** Strict unpadded base64url: anything Buffer would silently skip or pad is refused. */
export function fromBase64Url(text: string, expectedBytes: number): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return null;
  const bytes = Buffer.from(text, "base64url");
  if (bytes.length !== expectedBytes || toBase64Url(bytes) !== text) return null;
  return new Uint8Array(bytes);
}

export function keyFromSeed(seed: Uint8Array): SigningKey {
  if (seed.length !== 32) throw new KeyFormatError("an Ed25519 private key is 32 bytes");
  const secretKey = new Uint8Array(seed);
  const publicKey = ed.getPublicKey(secretKey);
  return {
    secretKey,
    publicKey,
    publicKeyHex: Buffer.from(publicKey).toString("hex"),
    keyId: toBase64Url(publicKey),
  };
}

export function generateKeyPair(): SigningKey {
  return keyFromSeed(randomBytes(32));
}

/** A public key given as 64 hex digits or as a 43-character base64url key_id. */
export function parsePublicKey(text: string): Uint8Array {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return new Uint8Array(Buffer.from(t, "hex"));
  const b = fromBase64Url(t, 32);
  if (b) return b;
  throw new KeyFormatError(
    "a public key is 64 hex digits or a 43-character base64url key_id (32 bytes either way)",
  );
}

export function signBytes(message: Uint8Array, key: SigningKey): Uint8Array {
  return ed.sign(message, key.secretKey);
}

/** Sign `json.dumps(drop_none(payload), sort_keys=True, separators=(",", ":"))`. */
export function signPayload(payload: unknown, key: SigningKey): ReceiptSignature {
  const message = new TextEncoder().encode(canonicalJson(payload));
  return { alg: SIGNATURE_ALG, key_id: key.keyId, sig: toBase64Url(signBytes(message, key)) };
}

/** RFC 8032 strict verification (zip215 off), as libsodium/PyNaCl on the reference side. */
export function verifyBytes(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  try {
    return ed.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}
