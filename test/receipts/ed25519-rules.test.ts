// The miner signs and verifies with OpenSSL (node:crypto) for speed, under the reference's
// (libsodium/PyNaCl) rules. These tests pin both halves: the same bytes as an independent signer,
// and the refusals libsodium makes that OpenSSL alone would not.
import { createHash, createPublicKey, verify as opensslVerify, randomBytes } from "node:crypto";
import { Point } from "@noble/ed25519";
import { describe, expect, it } from "vitest";
import { seededRandom } from "../../src/prng.js";
import { keyFromSeed, SMALL_ORDER_ENCODINGS, signBytes, verifyBytes } from "../../src/receipts/crypto.js";
import { independentSign, independentVerify } from "../support/receipts.js";

const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const le = (b: Uint8Array) => BigInt(`0x${Buffer.from(b).reverse().toString("hex")}`);
const toLe32 = (n: bigint) => Buffer.from(n.toString(16).padStart(64, "0"), "hex").reverse();
/** The encoding of the neutral element (x = 0, y = 1): a point of small order. */
const IDENTITY = Buffer.concat([Buffer.from([1]), Buffer.alloc(31)]);

/** RFC 8032 5.1.5: the secret scalar a from a seed. */
function secretScalar(seed: Uint8Array): bigint {
  const h = createHash("sha512").update(seed).digest();
  const a = Buffer.from(h.subarray(0, 32));
  a[0]! &= 248;
  a[31]! &= 127;
  a[31]! |= 64;
  return le(a);
}

/** k = SHA-512(R || A || M) mod L. */
function challenge(r: Uint8Array, a: Uint8Array, m: Uint8Array): bigint {
  return le(createHash("sha512").update(r).update(a).update(m).digest()) % L;
}

function opensslAlone(sig: Uint8Array, msg: Uint8Array, pub: Uint8Array): boolean {
  const key = createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(pub).toString("base64url") },
    format: "jwk",
  });
  return opensslVerify(null, msg, key, sig);
}

describe("Ed25519 through OpenSSL, under the reference's rules", () => {
  it("signs byte for byte as an independent implementation, and both accept each other's signatures", () => {
    const rnd = seededRandom(7);
    for (let i = 0; i < 25; i++) {
      const seed = randomBytes(32);
      const key = keyFromSeed(seed);
      const text = `receipt ${i} ${"x".repeat(Math.floor(rnd() * 300))}`;
      const msg = new TextEncoder().encode(text);
      const sig = signBytes(msg, key);
      expect(Buffer.from(sig).toString("base64url")).toBe(independentSign(text, seed.toString("hex")));
      expect(verifyBytes(sig, msg, key.publicKey)).toBe(true);
      expect(independentVerify(text, Buffer.from(sig).toString("base64url"), key.keyId)).toBe(true);
    }
  });

  it("refuses any flipped bit in the signature, the message or the key", () => {
    const key = keyFromSeed(randomBytes(32));
    const msg = new TextEncoder().encode("the result");
    const sig = signBytes(msg, key);
    for (let bit = 0; bit < 512; bit += 7) {
      const bad = new Uint8Array(sig);
      bad[bit >> 3]! ^= 1 << (bit & 7);
      expect(verifyBytes(bad, msg, key.publicKey)).toBe(false);
    }
    const badMsg = new Uint8Array(msg);
    badMsg[0]! ^= 1;
    expect(verifyBytes(sig, badMsg, key.publicKey)).toBe(false);
    const badKey = new Uint8Array(key.publicKey);
    badKey[5]! ^= 1;
    expect(verifyBytes(sig, msg, badKey)).toBe(false);
    expect(verifyBytes(sig.subarray(0, 63), msg, key.publicKey)).toBe(false);
    expect(verifyBytes(sig, msg, key.publicKey.subarray(0, 31))).toBe(false);
  });

  it("refuses S at or above the group order (S + L would satisfy the equation too)", () => {
    const key = keyFromSeed(randomBytes(32));
    const msg = new TextEncoder().encode("malleable?");
    const sig = signBytes(msg, key);
    const s = le(sig.subarray(32));
    const bad = Buffer.concat([Buffer.from(sig.subarray(0, 32)), toLe32(s + L)]);
    expect(verifyBytes(bad, msg, key.publicKey)).toBe(false);
  });

  it("refuses a small-order public key, which makes a signature hold for any message", () => {
    // A = identity, R = identity, S = 0: [0]B = R + [k]A for every message.
    const sig = Buffer.concat([IDENTITY, Buffer.alloc(32)]);
    for (const m of ["one message", "another"]) {
      expect(verifyBytes(sig, new TextEncoder().encode(m), IDENTITY)).toBe(false);
      expect(independentVerify(m, sig.toString("base64url"), IDENTITY.toString("base64url"))).toBe(false);
    }
  });

  it("refuses a small-order R, as libsodium does, though the equation holds and OpenSSL alone accepts it", () => {
    const seed = randomBytes(32);
    const key = keyFromSeed(seed);
    const msg = new TextEncoder().encode("odd R");
    // R = identity and S = k·a: then [S]B = [k]A = R + [k]A, the cofactorless equation holds.
    const s = (challenge(IDENTITY, key.publicKey, msg) * secretScalar(seed)) % L;
    const sig = new Uint8Array(Buffer.concat([IDENTITY, toLe32(s)]));
    expect(opensslAlone(sig, msg, key.publicKey)).toBe(true);
    expect(verifyBytes(sig, msg, key.publicKey)).toBe(false);
  });
});

describe("the small-order blocklist", () => {
  it("is exactly the encodings of the 8 torsion points (sign bit ignored) plus the non-canonical p and p + 1", () => {
    // A point of order 8, then the subgroup it generates: all 8 points of small order.
    const t = Point.fromBytes(Buffer.from(SMALL_ORDER_ENCODINGS[2]!, "hex"), true);
    expect(t.isSmallOrder()).toBe(true);
    expect(t.double().double().is0()).toBe(false);
    const encodings = new Set<string>();
    let p = Point.ZERO;
    for (let k = 0; k < 8; k++) {
      const b = Buffer.from(p.toBytes());
      b[31]! &= 0x7f;
      encodings.add(b.toString("hex"));
      p = p.add(t);
    }
    expect(p.is0()).toBe(true);
    // y = p and y = p + 1 are the only other encodings that fit: p + y for y in {0, 1}.
    const P = 2n ** 255n - 19n;
    for (const y of [P, P + 1n]) encodings.add(toLe32(y).toString("hex"));
    expect(new Set(SMALL_ORDER_ENCODINGS)).toEqual(encodings);
  });
});
