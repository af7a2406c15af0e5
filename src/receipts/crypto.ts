// Ed25519 keys and signature objects `{alg, key_id, sig}` (base64url, no padding), as the AITBC
// reference signer makes them.
//
// Why two libraries: node:crypto (OpenSSL) signs ~18x and verifies ~15x faster than
// @noble/ed25519 in JS (docs/benchmarks.md), and each job signs once and verifies once. Ed25519
// signing is deterministic, so the bytes are the reference's exactly (the vectors prove it).
// OpenSSL's verify is looser than the reference's libsodium in two places (it accepts small-order
// keys and small-order R), so a signature must also pass libsodium's point checks, made here
// with noble's strict decoding; a key's checks are cached with its OpenSSL key object.
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  sign as opensslSign,
  verify as opensslVerify,
  randomBytes,
} from "node:crypto";
import { Point } from "@noble/ed25519";
import { canonicalJson } from "./json.js";

export const SIGNATURE_ALG = "Ed25519";

/** An Ed25519 key pair. `secretKey` is the 32-byte seed: keep it out of logs and errors. */
export interface SigningKey {
  /** Never changed once made: its OpenSSL key object is kept by identity (signBytes). */
  readonly secretKey: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly publicKeyHex: string;
  /** base64url (unpadded) of the public key: the `key_id` in signatures. */
  readonly keyId: string;
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

/** PKCS#8 DER prefix of an Ed25519 private key (RFC 8410): the 32-byte seed follows it. */
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

function privateKeyObject(seed: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: "der", type: "pkcs8" });
}

/** The OpenSSL key object of each signing key, made once. */
const privateKeyObjects = new WeakMap<SigningKey, KeyObject>();

export function keyFromSeed(seed: Uint8Array): SigningKey {
  if (seed.length !== 32) throw new KeyFormatError("an Ed25519 private key is 32 bytes");
  const secretKey = new Uint8Array(seed);
  const keyObject = privateKeyObject(secretKey);
  const x = createPublicKey(keyObject).export({ format: "jwk" }).x;
  if (typeof x !== "string") throw new KeyFormatError("OpenSSL gave no public key for this seed");
  const publicKey = new Uint8Array(Buffer.from(x, "base64url"));
  const key: SigningKey = {
    secretKey,
    publicKey,
    publicKeyHex: Buffer.from(publicKey).toString("hex"),
    keyId: toBase64Url(publicKey),
  };
  privateKeyObjects.set(key, keyObject);
  return key;
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
  let keyObject = privateKeyObjects.get(key);
  if (!keyObject) {
    // A SigningKey built by hand (not by keyFromSeed): make its key object once.
    keyObject = privateKeyObject(key.secretKey);
    privateKeyObjects.set(key, keyObject);
  }
  return new Uint8Array(opensslSign(null, message, keyObject));
}

/** Sign `json.dumps(drop_none(payload), sort_keys=True, separators=(",", ":"))`. */
export function signPayload(payload: unknown, key: SigningKey): ReceiptSignature {
  const message = new TextEncoder().encode(canonicalJson(payload));
  return { alg: SIGNATURE_ALG, key_id: key.keyId, sig: toBase64Url(signBytes(message, key)) };
}

/** The group order L: a signature's S must be below it (RFC 8032 5.1.7). */
const GROUP_ORDER = 2n ** 252n + 27742317777372353535851937790883648493n;

/**
 * A public key as libsodium accepts it: a canonical encoding (y < p, no "-0") of a point on the
 * curve that is not of small order. Decoding costs a square root: done once per key (cached).
 */
function acceptableKey(bytes: Uint8Array): boolean {
  try {
    return !Point.fromBytes(bytes, false).isSmallOrder();
  } catch {
    return false;
  }
}

/**
 * Every encoding of a small-order point, sign bit ignored: the y of each of the 8 torsion points
 * (1, 0, -1 and the two of order 8) plus the non-canonical p and p + 1. libsodium refuses an R
 * that is one of these; test/receipts/ed25519-rules.test.ts derives the list from the curve.
 */
export const SMALL_ORDER_ENCODINGS: readonly string[] = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
];
const smallOrderBytes = SMALL_ORDER_ENCODINGS.map((h) => Buffer.from(h, "hex"));

function hasSmallOrder(point: Uint8Array): boolean {
  return smallOrderBytes.some((b) => {
    for (let i = 0; i < 31; i++) if (point[i] !== b[i]) return false;
    return ((point[31] ?? 0) & 0x7f) === b[31];
  });
}

/** Public keys already checked: their OpenSSL object, or null when libsodium would refuse them. */
const publicKeyObjects = new Map<string, KeyObject | null>();
const PUBLIC_KEY_CACHE_MAX = 256;

function publicKeyObject(publicKey: Uint8Array): KeyObject | null {
  const id = toBase64Url(publicKey);
  const cached = publicKeyObjects.get(id);
  if (cached !== undefined) return cached;
  let keyObject: KeyObject | null = null;
  if (acceptableKey(publicKey)) {
    try {
      keyObject = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: id }, format: "jwk" });
    } catch {
      keyObject = null;
    }
  }
  // A verifier sees few keys (its own, its coordinator's); a flood of new ones only cycles the cache.
  if (publicKeyObjects.size >= PUBLIC_KEY_CACHE_MAX) publicKeyObjects.clear();
  publicKeyObjects.set(id, keyObject);
  return keyObject;
}

function bytesToNumberLE(bytes: Uint8Array): bigint {
  return BigInt(`0x${Buffer.from(bytes).reverse().toString("hex") || "0"}`);
}

/**
 * Ed25519 verification with the reference's (libsodium/PyNaCl) rules: S below the group order,
 * the key canonical and not of small order, R not of small order, and [S]B = R + [k]A compared
 * as encodings (OpenSSL's check, the same cofactorless equation libsodium uses; a non-canonical
 * or invalid R can never equal the encoding it is compared with).
 */
export function verifyBytes(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  if (bytesToNumberLE(signature.subarray(32)) >= GROUP_ORDER) return false;
  const keyObject = publicKeyObject(publicKey);
  if (keyObject === null || hasSmallOrder(signature.subarray(0, 32))) return false;
  try {
    return opensslVerify(null, message, keyObject, signature);
  } catch {
    return false;
  }
}
