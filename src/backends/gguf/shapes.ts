// Llama model shapes the generators write: the real models' dimensions and rope settings as their
// config.json declares them (so random weights give real speeds and memory), the tensor list
// llama.cpp's `llama` architecture loads, and the metadata that describes them.
import type { KvEntry } from "./encode.js";
import { FIRST_PIECE, spmTokenizerKv } from "./vocab.js";

/** Llama 3's rope_scaling {rope_type: "llama3"}: written as the rope_freqs.weight tensor. */
export interface Llama3RopeScaling {
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalContext: number;
}

export interface LlamaShape {
  name: string;
  vocab: number;
  /** hidden_size */
  embd: number;
  layers: number;
  heads: number;
  kvHeads: number;
  /** intermediate_size */
  ff: number;
  /** max_position_embeddings: llama.context_length */
  ctx: number;
  ropeBase: number;
  rmsEps: number;
  /** tie_word_embeddings: no output.weight, llama.cpp reuses token_embd. */
  tiedEmbeddings: boolean;
  ropeScaling?: Llama3RopeScaling;
}

const LLAMA3_VOCAB = 128256;

export const SHAPES = {
  // meta-llama/Llama-3.2-1B config.json
  "llama-3.2-1b": {
    name: "llama-3.2-1b",
    vocab: LLAMA3_VOCAB,
    embd: 2048,
    layers: 16,
    heads: 32,
    kvHeads: 8,
    ff: 8192,
    ctx: 131072,
    ropeBase: 500000,
    rmsEps: 1e-5,
    tiedEmbeddings: true,
    ropeScaling: { factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalContext: 8192 },
  },
  // meta-llama/Llama-3.1-8B config.json
  "llama-3.1-8b": {
    name: "llama-3.1-8b",
    vocab: LLAMA3_VOCAB,
    embd: 4096,
    layers: 32,
    heads: 32,
    kvHeads: 8,
    ff: 14336,
    ctx: 131072,
    ropeBase: 500000,
    rmsEps: 1e-5,
    tiedEmbeddings: false,
    ropeScaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContext: 8192 },
  },
  // The tiny test model's dimensions (tiny-gguf.ts TEST_PRESET), ~0.5 MB.
  tiny: {
    name: "tiny",
    vocab: 300,
    embd: 64,
    layers: 2,
    heads: 4,
    kvHeads: 4,
    ff: 128,
    ctx: 512,
    ropeBase: 10000,
    rmsEps: 1e-5,
    tiedEmbeddings: false,
  },
  // The benchmark model's dimensions (tiny-gguf.ts BENCH_PRESET), ~55 MB in F16.
  "tiny-bench": {
    name: "tiny-bench",
    vocab: 2000,
    embd: 512,
    layers: 8,
    heads: 8,
    kvHeads: 8,
    ff: 1408,
    ctx: 2048,
    ropeBase: 10000,
    rmsEps: 1e-5,
    tiedEmbeddings: false,
  },
} as const satisfies Record<string, LlamaShape>;

export type ShapeName = keyof typeof SHAPES;
export const SHAPE_NAMES = Object.keys(SHAPES) as ShapeName[];

export function isShapeName(s: string): s is ShapeName {
  return Object.hasOwn(SHAPES, s);
}

export const headDim = (s: LlamaShape): number => s.embd / s.heads;

/** Refuse a shape llama.cpp would not load, or whose rows do not split into `blockElems` blocks. */
export function checkShape(s: LlamaShape, blockElems = 1): void {
  const int = (k: keyof LlamaShape, min: number, max: number) => {
    const v = s[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max)
      throw new RangeError(`shape ${s.name}: ${k} must be an integer in [${min}, ${max}], got ${String(v)}`);
  };
  int("vocab", FIRST_PIECE + 1, 1 << 20);
  int("embd", 8, 1 << 16);
  int("layers", 1, 512);
  int("heads", 1, 1024);
  int("kvHeads", 1, 1024);
  int("ff", 1, 1 << 18);
  int("ctx", 16, 1 << 24);
  if (s.embd % s.heads !== 0 || headDim(s) % 2 !== 0)
    throw new RangeError(`shape ${s.name}: embd (${s.embd}) must be heads (${s.heads}) × an even head size`);
  if (s.heads % s.kvHeads !== 0)
    throw new RangeError(`shape ${s.name}: heads (${s.heads}) must be a multiple of kvHeads (${s.kvHeads})`);
  if (!(s.ropeBase > 0 && s.rmsEps > 0)) throw new RangeError(`shape ${s.name}: bad rope base or epsilon`);
  for (const [what, n] of [
    ["embd", s.embd],
    ["ff", s.ff],
  ] as const)
    if (n % blockElems !== 0)
      throw new RangeError(`shape ${s.name}: ${what} (${n}) is not a multiple of the block of ${blockElems}`);
}

export type TensorRole = "token_embd" | "norm" | "matrix" | "output" | "rope_freqs";

/** One tensor of the model, in file order. */
export interface TensorPlan {
  name: string;
  /** ggml order: ne0 (the row length) first. */
  dims: readonly number[];
  role: TensorRole;
  /** Inputs per output (the row length) for matrices: sets the weights' spread. */
  fanIn: number;
  /** Rows of silenced tokens are zeroed (output.weight, or token_embd when tied). */
  zeroRows: boolean;
}

/** The tensors of a `llama` model with grouped-query attention, in the order the generators write. */
export function llamaTensorPlan(s: LlamaShape): TensorPlan[] {
  const { embd, ff, vocab } = s;
  const kvDim = headDim(s) * s.kvHeads;
  const out: TensorPlan[] = [];
  const add = (name: string, dims: number[], role: TensorRole, zeroRows = false) =>
    out.push({ name, dims, role, fanIn: dims[0]!, zeroRows });
  if (s.ropeScaling) add("rope_freqs.weight", [headDim(s) / 2], "rope_freqs");
  add("token_embd.weight", [embd, vocab], "token_embd", s.tiedEmbeddings);
  for (let l = 0; l < s.layers; l++) {
    const p = `blk.${l}.`;
    add(`${p}attn_norm.weight`, [embd], "norm");
    add(`${p}attn_q.weight`, [embd, embd], "matrix");
    add(`${p}attn_k.weight`, [embd, kvDim], "matrix");
    add(`${p}attn_v.weight`, [embd, kvDim], "matrix");
    add(`${p}attn_output.weight`, [embd, embd], "matrix");
    add(`${p}ffn_norm.weight`, [embd], "norm");
    add(`${p}ffn_gate.weight`, [embd, ff], "matrix");
    add(`${p}ffn_up.weight`, [embd, ff], "matrix");
    add(`${p}ffn_down.weight`, [ff, embd], "matrix");
  }
  add("output_norm.weight", [embd], "norm");
  if (!s.tiedEmbeddings) add("output.weight", [embd, vocab], "output", true);
  return out;
}

/** rope_freqs.weight as llama.cpp's convert_hf_to_gguf.py computes it for rope_type "llama3". */
export function llama3RopeFactors(s: LlamaShape): Float32Array {
  const r = s.ropeScaling;
  const dim = headDim(s);
  const out = new Float32Array(dim / 2);
  if (!r) return out.fill(1);
  const lowWavelen = r.originalContext / r.lowFreqFactor;
  const highWavelen = r.originalContext / r.highFreqFactor;
  for (let i = 0; i < out.length; i++) {
    const freq = 1 / s.ropeBase ** ((2 * i) / dim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = r.factor;
    else {
      const smooth = (r.originalContext / wavelen - r.lowFreqFactor) / (r.highFreqFactor - r.lowFreqFactor);
      out[i] = 1 / ((1 - smooth) / r.factor + smooth);
    }
  }
  return out;
}

export interface LlamaMetadataOptions {
  name: string;
  /** general.file_type (llama_ftype): 0 ALL_F32, 1 MOSTLY_F16, 2 MOSTLY_Q4_0, 7 MOSTLY_Q8_0. */
  fileType: number;
  alignment: number;
  /** Quantized files also carry general.quantization_version (2, as llama-quantize writes). */
  quantized: boolean;
}

/** The metadata llama.cpp needs for a `llama` model of this shape (tiny-gguf.ts's key set and order). */
export function llamaMetadata(s: LlamaShape, o: LlamaMetadataOptions): KvEntry[] {
  const u32 = (v: number) => ({ t: "u32", v }) as const;
  return [
    ["general.architecture", { t: "string", v: "llama" }],
    ["general.name", { t: "string", v: o.name }],
    ["general.alignment", u32(o.alignment)],
    ["general.file_type", u32(o.fileType)],
    ["llama.vocab_size", u32(s.vocab)],
    ["llama.context_length", u32(s.ctx)],
    ["llama.embedding_length", u32(s.embd)],
    ["llama.block_count", u32(s.layers)],
    ["llama.feed_forward_length", u32(s.ff)],
    ["llama.attention.head_count", u32(s.heads)],
    ["llama.attention.head_count_kv", u32(s.kvHeads)],
    ["llama.attention.layer_norm_rms_epsilon", { t: "f32", v: s.rmsEps }],
    ["llama.rope.dimension_count", u32(headDim(s))],
    ["llama.rope.freq_base", { t: "f32", v: s.ropeBase }],
    ...spmTokenizerKv(s.vocab),
    ...(o.quantized ? ([["general.quantization_version", u32(2)]] as const) : []),
  ];
}
