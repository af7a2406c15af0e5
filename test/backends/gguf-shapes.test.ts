// The streaming GGUF generator (src/backends/gguf/): every real shape and weight type has the
// header, metadata, tensor infos and size its formula says (checked with the project's own parser
// and node-llama-cpp's, on sparse files: nothing big is written), the bytes are deterministic
// whatever the chunking, the blocks are valid, and the silenced rows are zero.
import { createHash } from "node:crypto";
import { closeSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { readGgufFileInfo } from "node-llama-cpp";
import { afterAll, describe, expect, it } from "vitest";
import {
  dequantize,
  dequantizeQ4_0,
  dequantizeQ8_0,
  fromHalf,
  quantizeQ4_0,
  quantizeQ8_0,
  randomWeightStd,
  WEIGHT_FORMATS,
  WEIGHT_TYPES,
  type WeightType,
} from "../../src/backends/gguf/quant.js";
import { type LlamaShape, llama3RopeFactors, SHAPES } from "../../src/backends/gguf/shapes.js";
import { isSilenced } from "../../src/backends/gguf/vocab.js";
import { type ModelPlan, planModel, streamModel, writeModel } from "../../src/backends/gguf/writer.js";
import { readGgufHeader } from "../../src/backends/llama/gguf-header.js";
import { seededRandom } from "../../src/prng.js";
import { tempDir } from "../support/backends.js";

const dir = tempDir("gguf-shapes-");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A small shape with everything the real ones have: GQA, llama3 rope scaling, tied embeddings. */
const SMALL: LlamaShape = {
  name: "small",
  vocab: 400,
  embd: 128,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  ff: 192,
  ctx: 256,
  ropeBase: 500000,
  rmsEps: 1e-5,
  tiedEmbeddings: true,
  ropeScaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContext: 8192 },
};

/** The whole model in memory, and the order and sizes of the sink's writes. */
async function generate(plan: ModelPlan, chunkBytes?: number): Promise<Buffer> {
  const out = Buffer.alloc(plan.totalBytes);
  let next = 0;
  const n = await streamModel(
    plan,
    {
      write: async (d, pos) => {
        expect(pos).toBe(next); // issued in file order, back to back
        out.set(d, pos);
        next = pos + d.length;
      },
    },
    chunkBytes === undefined ? {} : { chunkBytes },
  );
  expect(n).toBe(plan.totalBytes);
  return out;
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** The header, then a hole up to the planned size: a complete file for the parsers, no disk used. */
function sparseModel(plan: ModelPlan, name: string): string {
  const path = join(dir, name);
  const fd = openSync(path, "w");
  try {
    writeSync(fd, plan.header);
    writeSync(fd, Buffer.alloc(1), 0, 1, plan.totalBytes - 1);
  } finally {
    closeSync(fd);
  }
  return path;
}

/** Parameters of a llama shape, by the model card's arithmetic (not the generator's tensor list). */
function counts(s: LlamaShape): { weights: number; f32: number } {
  const kvDim = (s.embd / s.heads) * s.kvHeads;
  const perLayer = 2 * s.embd * s.embd + 2 * s.embd * kvDim + 3 * s.embd * s.ff;
  return {
    weights: s.vocab * s.embd * (s.tiedEmbeddings ? 1 : 2) + s.layers * perLayer,
    f32: (2 * s.layers + 1) * s.embd + (s.ropeScaling ? s.embd / s.heads / 2 : 0),
  };
}

describe("real shapes: header, metadata, tensor infos and size", () => {
  const real = ["llama-3.2-1b", "llama-3.1-8b"] as const;
  // Known figures: the 8B has 8.03 B parameters, the 1B (tied embeddings) 1.24 B.
  const approxBytes: Record<string, Record<WeightType, number>> = {
    "llama-3.2-1b": { q4_0: 0.698e9, q8_0: 1.316e9, f16: 2.475e9 },
    "llama-3.1-8b": { q4_0: 4.521e9, q8_0: 8.536e9, f16: 16.06e9 },
  };

  for (const shapeName of real) {
    for (const type of WEIGHT_TYPES) {
      it(`${shapeName} ${type}`, async () => {
        const plan = planModel({ shape: shapeName, type });
        const s = SHAPES[shapeName];
        const f = WEIGHT_FORMATS[type];
        const { weights, f32 } = counts(s);
        const tensorBytes = plan.tensors.reduce((a, t) => a + t.bytes, 0);
        expect(tensorBytes).toBe((weights / f.blockElems) * f.blockBytes + f32 * 4);
        expect(plan.totalBytes).toBe(
          plan.header.length + plan.tensors.reduce((a, t) => a + Math.ceil(t.bytes / 32) * 32, 0),
        );
        expect(plan.totalBytes / approxBytes[shapeName]![type]).toBeCloseTo(1, 2);

        const path = sparseModel(plan, `${shapeName}-${type}.gguf`);
        try {
          // The project's own parser: a complete file whose tensors end exactly at its end.
          const h = readGgufHeader(path);
          expect(h).toMatchObject({
            ok: true,
            version: 3,
            tensorCount: plan.tensors.length,
            alignment: 32,
            dataOffset: plan.header.length,
            requiredBytes: plan.totalBytes,
            fileBytes: plan.totalBytes,
          });
          // node-llama-cpp's parser: the metadata llama.cpp reads.
          const info = await readGgufFileInfo(path);
          const md = info.metadata as unknown as Record<string, Record<string, unknown>>;
          expect(md["general"]).toMatchObject({
            architecture: "llama",
            file_type: f.fileType,
            name: `random-${shapeName}-${type}`,
          });
          if (type !== "f16") expect(md["general"]?.["quantization_version"]).toBe(2);
          const llama = md["llama"] as Record<string, unknown> & {
            attention: Record<string, unknown>;
            rope: Record<string, unknown>;
          };
          expect(llama).toMatchObject({
            vocab_size: 128256,
            context_length: 131072,
            embedding_length: s.embd,
            block_count: s.layers,
            feed_forward_length: s.ff,
          });
          expect(llama.attention).toMatchObject({ head_count: 32, head_count_kv: 8 });
          expect(llama.attention["layer_norm_rms_epsilon"]).toBeCloseTo(1e-5);
          expect(llama.rope).toMatchObject({ dimension_count: s.embd / s.heads, freq_base: 500000 });
          const tok = md["tokenizer"]?.["ggml"] as Record<string, unknown>;
          expect(tok["model"]).toBe("llama");
          expect((tok["tokens"] as string[]).length).toBe(128256);
          expect(tok["eos_token_id"]).toBe(2);

          const byName = new Map(info.tensorInfo?.map((t) => [t.name, t]));
          expect(byName.size).toBe(plan.tensors.length);
          for (const t of plan.tensors) {
            const got = byName.get(t.name)!;
            expect(got.dimensions.map(Number)).toEqual(t.dims);
            expect(got.ggmlType).toBe(t.ggmlType);
            expect(Number(got.offset)).toBe(t.fileOffset - plan.header.length);
            expect(Number(got.fileOffset)).toBe(t.fileOffset);
          }
          expect(byName.get("blk.0.attn_norm.weight")?.ggmlType).toBe(0); // norms F32
          const headDim = s.embd / s.heads;
          expect(byName.get("rope_freqs.weight")?.ggmlType).toBe(0);
          expect(byName.get("rope_freqs.weight")?.dimensions.map(Number)).toEqual([headDim / 2]);
          expect(byName.get("blk.0.attn_k.weight")?.dimensions.map(Number)).toEqual([s.embd, 8 * headDim]);
          expect(byName.get("blk.0.ffn_down.weight")?.dimensions.map(Number)).toEqual([s.ff, s.embd]);
          expect(byName.get("token_embd.weight")?.ggmlType).toBe(f.ggmlType);
          // Llama 3.2 1B ties its embeddings (no output.weight); 3.1 8B does not.
          expect(byName.has("output.weight")).toBe(!s.tiedEmbeddings);
        } finally {
          rmSync(path, { force: true });
        }
      });
    }
  }

  it("writes the llama3 rope frequency factors the converter computes", () => {
    const f8 = llama3RopeFactors(SHAPES["llama-3.1-8b"]);
    expect(f8).toHaveLength(64);
    expect(f8[0]).toBe(1); // high frequencies unscaled
    expect(f8[63]).toBe(8); // low frequencies scaled by the factor
    for (let i = 1; i < 64; i++) expect(f8[i]!).toBeGreaterThanOrEqual(f8[i - 1]!);
    expect([...f8].some((v) => v > 1 && v < 8)).toBe(true); // the smooth band
    expect(llama3RopeFactors(SHAPES["llama-3.2-1b"])[31]).toBe(32);
  });

  it("refuses options llama.cpp could not load", () => {
    expect(() => planModel({ shape: "llama-3.3-70b" as "tiny", type: "q4_0" })).toThrow(/unknown shape/);
    expect(() => planModel({ shape: "tiny", type: "q4_1" as WeightType })).toThrow(/weight type/);
    expect(() => planModel({ shape: { ...SMALL, embd: 112, heads: 4 }, type: "q4_0" })).toThrow(
      /block of 32/,
    );
    expect(() => planModel({ shape: { ...SMALL, kvHeads: 3 }, type: "f16" })).toThrow(/kvHeads/);
    expect(() => planModel({ shape: "tiny", type: "f16", seed: -1 })).toThrow(/seed/);
    expect(planModel({ shape: "llama-3.2-1b", type: "q4_0", ctx: 4096 }).shape.ctx).toBe(4096);
  });
});

describe("generated bytes", () => {
  it("same options → same bytes, whatever the chunk size; another seed → other weights", async () => {
    const plan = planModel({ shape: SMALL, type: "q4_0", seed: 7 });
    const a = await generate(plan);
    const b = await generate(plan, 4096);
    const c = await generate(planModel({ shape: SMALL, type: "q4_0", seed: 8 }));
    expect(sha(a)).toBe(sha(b));
    expect(c.length).toBe(a.length);
    expect(sha(c)).not.toBe(sha(a));
  });

  it("writeModel writes those bytes, fsynced and renamed, reports progress, and leaves no temp file", async () => {
    const out = join(dir, "sub", "small.gguf");
    const opts = { shape: SMALL, type: "q8_0", seed: 3 } as const;
    const r0 = planModel(opts);
    const seen: number[] = [];
    const r = await writeModel(out, opts, {
      chunkBytes: 8192,
      onProgress: (p) => {
        expect(p.totalBytes).toBe(r0.totalBytes);
        seen.push(p.bytesWritten);
      },
    });
    expect(r).toMatchObject({ path: out, bytes: r0.totalBytes });
    expect(sha(readFileSync(out))).toBe(sha(await generate(r0)));
    expect(seen.length).toBeGreaterThan(5);
    expect(seen).toEqual([...seen].sort((x, y) => x - y));
    expect(seen.at(-1)).toBe(r0.totalBytes);
    expect(readdirSync(join(dir, "sub"))).toEqual(["small.gguf"]);
  });

  it("a failure part-way leaves neither the model nor a temp file", async () => {
    const sub = join(dir, "fails");
    const out = join(sub, "m.gguf");
    const stop = (p: { bytesWritten: number }) => {
      if (p.bytesWritten > 100_000) throw new Error("stopped by the test");
    };
    await expect(
      writeModel(out, { shape: SMALL, type: "f16" }, { chunkBytes: 4096, onProgress: stop }),
    ).rejects.toThrow(/stopped by the test/);
    expect(readdirSync(sub)).toEqual([]);
  });

  it("a failing write rejects the stream with its error", async () => {
    const plan = planModel({ shape: SMALL, type: "f16" });
    let n = 0;
    const sink = {
      write: async () => {
        if (++n === 3) throw new Error("ENOSPC: no space left on device");
      },
    };
    await expect(streamModel(plan, sink, { chunkBytes: 4096 })).rejects.toThrow(/ENOSPC/);
  });

  for (const type of WEIGHT_TYPES) {
    it(`${type}: finite weights of mean 0 and the planned spread; silenced rows zero`, async () => {
      const plan = planModel({ shape: SMALL, type });
      const file = await generate(plan);
      const tensor = (name: string) => {
        const t = plan.tensors.find((x) => x.name === name)!;
        return { t, data: file.subarray(t.fileOffset, t.fileOffset + t.bytes) };
      };
      const { t: q, data: qData } = tensor("blk.1.attn_q.weight");
      const w = dequantize(type, qData);
      expect(w.every(Number.isFinite)).toBe(true);
      const mean = w.reduce((a, v) => a + v, 0) / w.length;
      const std = Math.sqrt(w.reduce((a, v) => a + (v - mean) ** 2, 0) / w.length);
      const want = randomWeightStd(type, q.std);
      expect(std / want).toBeGreaterThan(0.95);
      expect(std / want).toBeLessThan(1.05);
      expect(Math.abs(mean)).toBeLessThan(0.05 * std);
      expect(want / q.std).toBeGreaterThan(0.7); // F16 rounds the spread to a power of two
      expect(want / q.std).toBeLessThan(1.42);
      // Tied embeddings: token_embd is the output, so its silenced rows are zero.
      const { t: e, data: eData } = tensor("token_embd.weight");
      const rowBytes = e.bytes / e.dims[1]!;
      for (let id = 0; id < 300; id++) {
        const row = eData.subarray(id * rowBytes, (id + 1) * rowBytes);
        expect([id, row.every((b) => b === 0)]).toEqual([id, isSilenced(id)]);
      }
      const { data: norm } = tensor("blk.0.ffn_norm.weight");
      expect([
        ...new Float32Array(norm.buffer.slice(norm.byteOffset, norm.byteOffset + norm.length)),
      ]).toEqual(new Array(SMALL.embd).fill(1));
    });
  }
});

describe("block formats", () => {
  const rnd = seededRandom(11);
  const floats = (n: number, scale: number) =>
    Float32Array.from({ length: n }, () => (rnd() * 2 - 1) * scale);

  it("Q4_0 round-trips within one step of its scale, in ggml's layout", () => {
    const x = floats(32 * 64, 3);
    const q = quantizeQ4_0(x);
    expect(q.length).toBe(64 * 18);
    const y = dequantizeQ4_0(q);
    for (let b = 0; b < 64; b++) {
      const d = Math.abs(fromHalf(q.readUInt16LE(b * 18)));
      expect(d).toBeGreaterThan(0);
      for (let j = 0; j < 32; j++)
        expect(Math.abs(y[b * 32 + j]! - x[b * 32 + j]!)).toBeLessThanOrEqual(d * 1.001);
    }
    // Element j is the low nibble of byte j, element j + 16 its high nibble; q = x / d + 8.
    const block = new Float32Array(32);
    block[0] = -8; // the largest magnitude: d = −8 / −8 = 1
    block[16] = 3;
    block[1] = 7;
    const one = quantizeQ4_0(block);
    expect(fromHalf(one.readUInt16LE(0))).toBe(1);
    expect(one[2]).toBe(0 | ((3 + 8) << 4));
    expect(one[3]! & 0xf).toBe(15);
    expect([...dequantizeQ4_0(one)]).toEqual([...block]);
  });

  it("Q8_0 round-trips within half a step of its scale", () => {
    const x = floats(32 * 64, 0.05);
    const q = quantizeQ8_0(x);
    expect(q.length).toBe(64 * 34);
    const y = dequantizeQ8_0(q);
    for (let b = 0; b < 64; b++) {
      const d = fromHalf(q.readUInt16LE(b * 34));
      for (let j = 0; j < 32; j++)
        expect(Math.abs(y[b * 32 + j]! - x[b * 32 + j]!)).toBeLessThanOrEqual(d * 0.5 + d * 127 * 2 ** -11);
    }
    const zeros = quantizeQ8_0(new Float32Array(32));
    expect(zeros.every((v) => v === 0)).toBe(true);
  });
});
