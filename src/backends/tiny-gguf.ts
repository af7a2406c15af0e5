// Deterministic random-weight GGUF v3 `llama` models for tests, the demo and benchmarks.
// Same options → same bytes (seeded PRNG, fixed layout). Pitfalls that make llama.cpp assert or
// print garbage are handled here (docs/models.md): feed_forward_length, token types (6 = byte),
// rms epsilon, context length and tokenizer model are always written, and the output rows of
// tokens that would end generation or produce non-ASCII text are zeroed.
import { createHash } from "node:crypto";
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { seededRandom } from "../prng.js";

export interface TinyModelOptions {
  /** Model name written to general.name (and the file name used by ensureTinyModel). */
  name?: string;
  vocab?: number;
  embd?: number;
  layers?: number;
  heads?: number;
  ff?: number;
  ctx?: number;
  seed?: number;
  /** Store the 2-D weight matrices as F16 (norms stay F32). */
  f16?: boolean;
}

export type ResolvedTinyOptions = Required<TinyModelOptions>;

/** ~0.5 MB: the test and demo model. */
export const TEST_PRESET: ResolvedTinyOptions = {
  name: "tiny",
  vocab: 300,
  embd: 64,
  layers: 2,
  heads: 4,
  ff: 128,
  ctx: 512,
  seed: 1,
  f16: false,
};

/** ~55 MB F16: compute-bound enough for benchmarks. */
export const BENCH_PRESET: ResolvedTinyOptions = {
  name: "tiny-bench",
  vocab: 2000,
  embd: 512,
  layers: 8,
  heads: 8,
  ff: 1408,
  ctx: 2048,
  seed: 1,
  f16: true,
};

const SPECIALS = ["<unk>", "<s>", "</s>"] as const;
const BYTE_BASE = SPECIALS.length;
const FIRST_PIECE = BYTE_BASE + 256;
const SPACE = "\u2581"; // SentencePiece's word-boundary marker

export function resolveTinyOptions(opts: TinyModelOptions = {}): ResolvedTinyOptions {
  const o: ResolvedTinyOptions = { ...TEST_PRESET, ...stripUndefined(opts) };
  const int = (k: keyof ResolvedTinyOptions, min: number, max: number) => {
    const v = o[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max)
      throw new RangeError(`tiny model option ${k} must be an integer in [${min}, ${max}], got ${String(v)}`);
  };
  int("vocab", FIRST_PIECE + 1, 1 << 20);
  int("embd", 8, 1 << 14);
  int("layers", 1, 256);
  int("heads", 1, 256);
  int("ff", 1, 1 << 16);
  int("ctx", 16, 1 << 20);
  int("seed", 0, 0xffffffff);
  if (o.embd % o.heads !== 0 || (o.embd / o.heads) % 2 !== 0)
    throw new RangeError(`embd (${o.embd}) must be a multiple of heads (${o.heads}) with an even head size`);
  if (!/^[A-Za-z0-9._-]{1,100}$/.test(o.name))
    throw new RangeError(`invalid model name ${JSON.stringify(o.name)}`);
  return o;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The vocabulary: specials, the 256 byte tokens, then text pieces so prompts tokenize compactly. */
export function tinyVocab(size: number): string[] {
  const tokens: string[] = [...SPECIALS];
  for (let b = 0; b < 256; b++) tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
  const seen = new Set(tokens);
  const add = (p: string) => {
    if (tokens.length < size && !seen.has(p)) {
      seen.add(p);
      tokens.push(p);
    }
  };
  add(SPACE);
  for (const c of "etaoinshrdlucmfwypvbgkjqxz") add(c);
  for (const c of "etaoinshrdlucmfwypvbgkjqxz") add(SPACE + c);
  for (const c of "ETAOINSHRDLUCMFWYPVBGKJQXZ0123456789.,!?'\"-:;()") add(c);
  for (let c = 0x21; c <= 0x7e; c++) add(String.fromCharCode(c));
  const letters = "etaoinshrdlucmfwypvbgkjqxz";
  for (const a of letters) for (const b of letters) add(a + b);
  for (const a of letters) for (const b of letters) add(SPACE + a + b);
  // Very large vocabularies: deterministic three-letter pieces.
  for (let i = 0; tokens.length < size; i++) {
    const p = letters[i % 26]! + letters[Math.floor(i / 26) % 26]! + letters[Math.floor(i / 676) % 26]!;
    add(i < 17576 ? p : `${SPACE}${p}${Math.floor(i / 17576)}`);
  }
  return tokens;
}

/** Tokens whose output row is zeroed: everything that is not plain printable ASCII text. */
function isSilenced(id: number): boolean {
  if (id < BYTE_BASE) return true;
  if (id < FIRST_PIECE) {
    const b = id - BYTE_BASE;
    return b < 0x20 || b > 0x7e;
  }
  return false;
}

// ---- GGUF encoding ------------------------------------------------------------------------

const T = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9 } as const;
const GGML_F32 = 0;
const GGML_F16 = 1;
const ALIGN = 32;

class Sink {
  private chunks: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  i32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.push(b);
  }
  u64(v: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  f32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }
  str(s: string): void {
    const b = Buffer.from(s, "utf8");
    this.u64(b.length);
    this.push(b);
  }
  pad(align: number): void {
    const rem = this.length % align;
    if (rem) this.push(Buffer.alloc(align - rem));
  }
  concat(): Buffer {
    return Buffer.concat(this.chunks, this.length);
  }
}

type KvValue =
  | { t: "u32"; v: number }
  | { t: "f32"; v: number }
  | { t: "bool"; v: boolean }
  | { t: "string"; v: string }
  | { t: "strings"; v: string[] }
  | { t: "f32s"; v: number[] }
  | { t: "i32s"; v: number[] };

function writeKv(s: Sink, key: string, val: KvValue): void {
  s.str(key);
  switch (val.t) {
    case "u32":
      s.u32(T.u32);
      s.u32(val.v);
      break;
    case "f32":
      s.u32(T.f32);
      s.f32(val.v);
      break;
    case "bool":
      s.u32(T.bool);
      s.push(Buffer.from([val.v ? 1 : 0]));
      break;
    case "string":
      s.u32(T.string);
      s.str(val.v);
      break;
    case "strings":
      s.u32(T.array);
      s.u32(T.string);
      s.u64(val.v.length);
      for (const x of val.v) s.str(x);
      break;
    case "f32s":
      s.u32(T.array);
      s.u32(T.f32);
      s.u64(val.v.length);
      for (const x of val.v) s.f32(x);
      break;
    case "i32s":
      s.u32(T.array);
      s.u32(T.i32);
      s.u64(val.v.length);
      for (const x of val.v) s.i32(x);
      break;
  }
}

/** IEEE 754 binary32 → binary16, round to nearest even (Node 20 has no Float16Array). */
const f32buf = new Float32Array(1);
const u32view = new Uint32Array(f32buf.buffer);
export function toHalf(v: number): number {
  f32buf[0] = v;
  const x = u32view[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // a carry rolls into the exponent
  return sign | h;
}

interface TensorSpec {
  name: string;
  /** ggml order: ne0 (row length) first. */
  dims: number[];
  data: Float32Array;
  f16: boolean;
}

function encodeTensor(t: TensorSpec): Buffer {
  if (!t.f16) return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const out = Buffer.alloc(t.data.length * 2);
  for (let i = 0; i < t.data.length; i++) out.writeUInt16LE(toHalf(t.data[i]!), i * 2);
  return out;
}

function buildTensors(o: ResolvedTinyOptions): TensorSpec[] {
  const rnd = seededRandom(o.seed);
  const uniform = (n: number, scale: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = (rnd() * 2 - 1) * scale;
    return a;
  };
  const ones = (n: number) => new Float32Array(n).fill(1);
  const matScale = (fanIn: number) => Math.sqrt(3 / fanIn); // unit variance activations
  const { embd, ff, vocab } = o;
  const tensors: TensorSpec[] = [];
  const mat = (name: string, cols: number, rows: number, scale: number) =>
    tensors.push({ name, dims: [cols, rows], data: uniform(cols * rows, scale), f16: o.f16 });
  mat("token_embd.weight", embd, vocab, 1);
  for (let l = 0; l < o.layers; l++) {
    const p = `blk.${l}.`;
    tensors.push({ name: `${p}attn_norm.weight`, dims: [embd], data: ones(embd), f16: false });
    mat(`${p}attn_q.weight`, embd, embd, matScale(embd));
    mat(`${p}attn_k.weight`, embd, embd, matScale(embd));
    mat(`${p}attn_v.weight`, embd, embd, matScale(embd));
    mat(`${p}attn_output.weight`, embd, embd, matScale(embd));
    tensors.push({ name: `${p}ffn_norm.weight`, dims: [embd], data: ones(embd), f16: false });
    mat(`${p}ffn_gate.weight`, embd, ff, matScale(embd));
    mat(`${p}ffn_up.weight`, embd, ff, matScale(embd));
    mat(`${p}ffn_down.weight`, ff, embd, matScale(ff));
  }
  tensors.push({ name: "output_norm.weight", dims: [embd], data: ones(embd), f16: false });
  // Logits with a spread of ~10: the zeroed (silenced) rows then stay out of reach even when
  // sampling at temperature 1, not only under greedy decoding.
  const out = uniform(embd * vocab, 10 * matScale(embd));
  for (let id = 0; id < vocab; id++) if (isSilenced(id)) out.fill(0, id * embd, (id + 1) * embd);
  tensors.push({ name: "output.weight", dims: [embd, vocab], data: out, f16: o.f16 });
  return tensors;
}

/** The whole file as bytes. */
export function encodeTinyGguf(opts: TinyModelOptions = {}): Buffer {
  const o = resolveTinyOptions(opts);
  const tokens = tinyVocab(o.vocab);
  const types = tokens.map((_, id) => (id === 0 ? 2 : id < BYTE_BASE ? 3 : id < FIRST_PIECE ? 6 : 1));
  // SPM merges prefer higher scores: longer pieces score higher so words use them.
  const scores = tokens.map((t, id) => (id < FIRST_PIECE ? 0 : -id / o.vocab + t.length));
  const kv: [string, KvValue][] = [
    ["general.architecture", { t: "string", v: "llama" }],
    ["general.name", { t: "string", v: o.name }],
    ["general.alignment", { t: "u32", v: ALIGN }],
    ["general.file_type", { t: "u32", v: o.f16 ? 1 : 0 }],
    ["llama.vocab_size", { t: "u32", v: o.vocab }],
    ["llama.context_length", { t: "u32", v: o.ctx }],
    ["llama.embedding_length", { t: "u32", v: o.embd }],
    ["llama.block_count", { t: "u32", v: o.layers }],
    ["llama.feed_forward_length", { t: "u32", v: o.ff }],
    ["llama.attention.head_count", { t: "u32", v: o.heads }],
    ["llama.attention.head_count_kv", { t: "u32", v: o.heads }],
    ["llama.attention.layer_norm_rms_epsilon", { t: "f32", v: 1e-5 }],
    ["llama.rope.dimension_count", { t: "u32", v: o.embd / o.heads }],
    ["llama.rope.freq_base", { t: "f32", v: 10000 }],
    ["tokenizer.ggml.model", { t: "string", v: "llama" }],
    ["tokenizer.ggml.tokens", { t: "strings", v: tokens }],
    ["tokenizer.ggml.scores", { t: "f32s", v: scores }],
    ["tokenizer.ggml.token_type", { t: "i32s", v: types }],
    ["tokenizer.ggml.unknown_token_id", { t: "u32", v: 0 }],
    ["tokenizer.ggml.bos_token_id", { t: "u32", v: 1 }],
    ["tokenizer.ggml.eos_token_id", { t: "u32", v: 2 }],
    ["tokenizer.ggml.add_bos_token", { t: "bool", v: true }],
    ["tokenizer.ggml.add_eos_token", { t: "bool", v: false }],
  ];
  const tensors = buildTensors(o);
  const blobs = tensors.map(encodeTensor);

  const head = new Sink();
  head.push(Buffer.from("GGUF", "ascii"));
  head.u32(3);
  head.u64(tensors.length);
  head.u64(kv.length);
  for (const [k, v] of kv) writeKv(head, k, v);
  let offset = 0;
  tensors.forEach((t, i) => {
    head.str(t.name);
    head.u32(t.dims.length);
    for (const d of t.dims) head.u64(d);
    head.u32(t.f16 ? GGML_F16 : GGML_F32);
    head.u64(offset);
    offset += blobs[i]!.length;
    offset += (ALIGN - (offset % ALIGN)) % ALIGN;
  });
  head.pad(ALIGN);
  for (const b of blobs) {
    head.push(b);
    head.pad(ALIGN);
  }
  return head.concat();
}

function writeAtomic(path: string, data: Buffer | string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
  const fd = openSync(tmp, "w", 0o644);
  try {
    writeFileSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/** Write the model to `path` atomically (temp file + rename). */
export function writeTinyGguf(path: string, opts: TinyModelOptions = {}): void {
  writeAtomic(path, encodeTinyGguf(opts));
}

/** A short digest of the resolved options: the sidecar records it to detect stale files. */
export function tinyOptionsHash(opts: TinyModelOptions = {}): string {
  const o = resolveTinyOptions(opts);
  const canonical = JSON.stringify(
    Object.keys(o)
      .sort()
      .map((k) => [k, o[k as keyof ResolvedTinyOptions]]),
  );
  return createHash("sha256").update(`tiny-gguf-v1|${canonical}`).digest("hex").slice(0, 16);
}

/**
 * Ensure `<dir>/<name>.gguf` holds the model for these options and return its path. The sidecar
 * `<name>.gguf.params.json` names the option hash; a file with a matching sidecar is reused.
 */
export async function ensureTinyModel(dir: string, opts: TinyModelOptions = {}): Promise<string> {
  const o = resolveTinyOptions(opts);
  const path = join(dir, `${o.name}.gguf`);
  const sidecar = `${path}.params.json`;
  const hash = tinyOptionsHash(o);
  if (existsSync(path) && existsSync(sidecar)) {
    try {
      const recorded = JSON.parse(readFileSync(sidecar, "utf8")) as { hash?: unknown };
      if (recorded.hash === hash) return path;
    } catch {
      // unreadable sidecar: regenerate below
    }
  }
  writeTinyGguf(path, o);
  writeAtomic(sidecar, `${JSON.stringify({ hash, options: o }, null, 2)}\n`);
  return path;
}
