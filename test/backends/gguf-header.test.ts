// The bounded GGUF header check: complete files pass with their exact size, truncated, corrupt,
// absurd and foreign-endian files are refused with a reason, and nothing ever throws.
import { statSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { getLlama } from "node-llama-cpp";
import { describe, expect, it } from "vitest";
import { GGUF_LIMITS, ggmlTypeSize, readGgufHeader } from "../../src/backends/llama/gguf-header.js";
import { encodeTinyGguf } from "../../src/backends/tiny-gguf.js";
import { tempDir } from "../support/backends.js";

const dir = tempDir("gguf-header-");
let n = 0;
function file(bytes: Buffer | Uint8Array): string {
  const p = join(dir, `f${n++}.gguf`);
  writeFileSync(p, bytes);
  return p;
}

/** A hand-made GGUF: raw KV entries and tensor infos, then `dataBytes` of tensor data. */
function gguf(opts: {
  version?: number;
  kvs?: Buffer[];
  tensors?: { name: string; dims: number[]; type: number; offset: number }[];
  alignment?: number;
  dataBytes?: number;
  tensorCount?: bigint;
  kvCount?: bigint;
}): Buffer {
  const parts: Buffer[] = [Buffer.from("GGUF")];
  const u32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    parts.push(b);
  };
  const u64 = (v: bigint | number) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    parts.push(b);
  };
  const str = (s: string) => {
    u64(Buffer.byteLength(s));
    parts.push(Buffer.from(s));
  };
  const tensors = opts.tensors ?? [];
  const kvs = opts.kvs ?? [];
  u32(opts.version ?? 3);
  u64(opts.tensorCount ?? BigInt(tensors.length));
  u64(opts.kvCount ?? BigInt(kvs.length));
  parts.push(...kvs);
  for (const t of tensors) {
    str(t.name);
    u32(t.dims.length);
    for (const d of t.dims) u64(d);
    u32(t.type);
    u64(t.offset);
  }
  const head = Buffer.concat(parts);
  const align = opts.alignment ?? 32;
  const padded = Math.ceil(head.length / align) * align;
  return Buffer.concat([head, Buffer.alloc(padded - head.length), Buffer.alloc(opts.dataBytes ?? 0)]);
}

function kv(key: string, type: number, value: Buffer): Buffer {
  const k = Buffer.alloc(8);
  k.writeBigUInt64LE(BigInt(key.length));
  const t = Buffer.alloc(4);
  t.writeUInt32LE(type);
  return Buffer.concat([k, Buffer.from(key), t, value]);
}
const u32le = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
};
const u64le = (v: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
};

describe("GGUF header check", () => {
  const tiny = encodeTinyGguf();

  it("accepts the tiny model, and the size it computes is the file's size", () => {
    const r = readGgufHeader(file(tiny));
    expect(r).toMatchObject({ ok: true, version: 3, alignment: 32, fileBytes: tiny.length });
    if (!r.ok) return;
    expect(r.requiredBytes).toBe(tiny.length);
    expect(r.tensorCount).toBe(2 + 9 * 2 + 1); // embeddings, 9 per layer, output norm and weights
    const f16 = encodeTinyGguf({ f16: true, seed: 3 });
    expect(readGgufHeader(file(f16))).toMatchObject({ ok: true, requiredBytes: f16.length });
  });

  it("refuses the tiny model cut by one byte, by half, and inside the header", () => {
    const one = readGgufHeader(file(tiny.subarray(0, tiny.length - 1)));
    expect(one).toMatchObject({ ok: false, truncated: true });
    if (!one.ok)
      expect(one.reason).toBe(
        `truncated: 0.5 MB of 0.5 MB (${tiny.length - 1} of ${tiny.length} bytes); ` +
          "the file is incomplete: download it again",
      );
    const half = readGgufHeader(file(tiny.subarray(0, tiny.length >> 1)));
    expect(half).toMatchObject({ ok: false, truncated: true, reason: expect.stringMatching(/^truncated: /) });
    const head = readGgufHeader(file(tiny.subarray(0, 200)));
    expect(head).toMatchObject({
      ok: false,
      truncated: true,
      reason: expect.stringMatching(/header runs past/),
    });
  });

  it("refuses garbage, empty and non-files without throwing", () => {
    expect(readGgufHeader(file(Buffer.from("hello, not a model")))).toEqual({
      ok: false,
      reason: "not a GGUF file",
    });
    expect(readGgufHeader(file(Buffer.alloc(0)))).toMatchObject({ ok: false, reason: "not a GGUF file" });
    expect(readGgufHeader(dir)).toEqual({ ok: false, reason: "not a regular file" });
    expect(readGgufHeader(join(dir, "absent.gguf"))).toEqual({ ok: false, reason: "ENOENT" });
    // Random bytes behind a valid magic and version, and random damage to a real header.
    let seed = 1;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    for (let i = 0; i < 40; i++) {
      const junk = Buffer.from(Array.from({ length: 64 + Math.floor(rnd() * 4096) }, () => rnd() * 256));
      const r = readGgufHeader(file(Buffer.concat([Buffer.from("GGUF"), u32le(3), junk])));
      expect(r.ok).toBe(false);
      const damaged = Buffer.from(tiny);
      for (let k = 0; k < 4; k++) damaged[Math.floor(rnd() * 6000)] = Math.floor(rnd() * 256);
      const d = readGgufHeader(file(damaged));
      expect(typeof d.ok).toBe("boolean");
      if (!d.ok) expect(d.reason.length).toBeGreaterThan(0);
    }
  });

  it("refuses absurd counts and lengths at once, without allocating for them", () => {
    expect(readGgufHeader(file(gguf({ tensorCount: 1n << 62n })))).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/tensor count \d+ exceeds the limit/),
    });
    expect(readGgufHeader(file(gguf({ kvCount: 0xffffffffffffffffn })))).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/metadata count .* exceeds/),
    });
    const longKey = Buffer.concat([u64le(1n << 40n), Buffer.from("x")]);
    expect(readGgufHeader(file(gguf({ kvs: [longKey], kvCount: 1n })))).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/metadata key length .* exceeds/),
    });
    // An array of 2^40 u8 claims a terabyte of header.
    const bigArray = kv("a", 9, Buffer.concat([u32le(0), u64le(1n << 40n)]));
    expect(readGgufHeader(file(gguf({ kvs: [bigArray] })))).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/exceeds the limit of/),
    });
    const hugeDims = gguf({ tensors: [{ name: "t", dims: [2 ** 40, 2 ** 40], type: 0, offset: 0 }] });
    expect(readGgufHeader(file(hugeDims))).toMatchObject({ ok: false, truncated: true });
    const fiveDims = gguf({ tensors: [{ name: "t", dims: [1, 1, 1, 1, 1], type: 0, offset: 0 }] });
    expect(readGgufHeader(file(fiveDims))).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/5 dim/),
    });
    // No time limit: a reader that allocated what these headers claim would run out of memory.
    expect(GGUF_LIMITS.maxStringBytes).toBeLessThan(GGUF_LIMITS.maxHeaderBytes);
  });

  it("refuses big-endian and v1 files with what to get instead", () => {
    const be = Buffer.concat([Buffer.from("GGUF"), Buffer.from([0, 0, 0, 3]), Buffer.alloc(16)]);
    expect(readGgufHeader(file(be))).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/big-endian/),
    });
    const v1 = Buffer.concat([Buffer.from("GGUF"), u32le(1), Buffer.alloc(8)]);
    expect(readGgufHeader(file(v1))).toMatchObject({ ok: false, reason: expect.stringMatching(/v1/) });
    const v9 = Buffer.concat([Buffer.from("GGUF"), u32le(9), Buffer.alloc(16)]);
    expect(readGgufHeader(file(v9))).toMatchObject({ ok: false, reason: "unsupported GGUF version 9" });
  });

  it("sizes quantized tensors by block, honours general.alignment, and checks bad ones", () => {
    // Q4_K: 256 elements in 144 bytes. 512 x 3 → 2 blocks per row x 3 rows = 864 bytes.
    const tensors = [
      { name: "a", dims: [512, 3], type: 12, offset: 0 },
      { name: "b", dims: [64], type: 0, offset: 896 },
    ];
    const align64 = kv("general.alignment", 4, u32le(64));
    const ok = gguf({ kvs: [align64], tensors, alignment: 64, dataBytes: 896 + 256 });
    const r = readGgufHeader(file(ok));
    expect(r).toMatchObject({ ok: true, alignment: 64, requiredBytes: ok.length });
    expect(readGgufHeader(file(ok.subarray(0, ok.length - 1)))).toMatchObject({ ok: false, truncated: true });
    const misaligned = gguf({ tensors: [{ name: "a", dims: [8], type: 0, offset: 4 }], dataBytes: 64 });
    expect(readGgufHeader(file(misaligned))).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/aligned/),
    });
    const oddRow = gguf({ tensors: [{ name: "q", dims: [100], type: 12, offset: 0 }], dataBytes: 144 });
    expect(readGgufHeader(file(oddRow))).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/block of 256/),
    });
    const badAlign = gguf({ kvs: [kv("general.alignment", 4, u32le(48))] });
    expect(readGgufHeader(file(badAlign))).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/alignment/),
    });
  });

  it("does not guess the size of an unknown ggml type: ok, size unchecked, with the reason", () => {
    const f = gguf({ tensors: [{ name: "x", dims: [32], type: 200, offset: 0 }], dataBytes: 0 });
    const r = readGgufHeader(file(f));
    expect(r).toMatchObject({
      ok: true,
      requiredBytes: null,
      unchecked: expect.stringMatching(/ggml type 200, unknown/),
    });
  });

  it("reads only the header: a large data section costs nothing", () => {
    const p = join(dir, "sparse.gguf");
    // A sparse 1 TiB data section: a reader that touched it would never finish (no time limit).
    const head = gguf({ tensors: [{ name: "w", dims: [1 << 20, 1 << 18], type: 0, offset: 0 }] });
    writeFileSync(p, head);
    truncateSync(p, head.length + 4 * (1 << 20) * (1 << 18));
    expect(readGgufHeader(p)).toMatchObject({ ok: true, requiredBytes: statSync(p).size });
  });

  it("knows the block geometry ggml itself reports for every type it lists", async () => {
    const llama = await getLlama({ gpu: false, build: "never", maxThreads: 1 });
    try {
      const native = (llama as unknown as { _bindings: Record<string, (t: number) => number | undefined> })
        ._bindings;
      for (let t = 0; t < 64; t++) {
        const block = native.getBlockSizeForGgmlType?.(t);
        const bytes = native.getTypeSizeForGgmlType?.(t);
        if (!block || !bytes) expect(ggmlTypeSize(t)).toBeUndefined();
        else expect([t, ...(ggmlTypeSize(t) ?? [])]).toEqual([t, block, bytes]);
      }
    } finally {
      await llama.dispose();
    }
  });
});
