// Deterministic random-weight GGUF v3 `llama` models for tests, the demo and benchmarks.
// Same options → same bytes (seeded PRNG, fixed layout). Pitfalls that make llama.cpp assert or
// print garbage are handled here (docs/models.md): feed_forward_length, token types (6 = byte),
// rms epsilon, context length and tokenizer model are always written, and the output rows of
// tokens that would end generation or produce non-ASCII text are zeroed. The header, vocabulary
// and tensor list come from gguf/ (shared with the streaming generator for real shapes); the
// weights are drawn here per element, which only small models can afford.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { writeFileAtomicSync } from "../file-io.js";
import { seededRandom } from "../prng.js";
import { encodeGgufHeader, GGUF_ALIGNMENT, type TensorInfo } from "./gguf/encode.js";
import { encodeF16, GGML_TYPE } from "./gguf/quant.js";
import { type LlamaShape, llamaMetadata, llamaTensorPlan, SHAPES } from "./gguf/shapes.js";
import { FIRST_PIECE, isSilenced } from "./gguf/vocab.js";

export { toHalf } from "./gguf/quant.js";
export { tinyVocab } from "./gguf/vocab.js";

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

/** The tiny options for one of the tiny shapes (the shape table holds the dimensions). */
function preset(s: LlamaShape, f16: boolean): ResolvedTinyOptions {
  const { name, vocab, embd, layers, heads, ff, ctx } = s;
  return { name, vocab, embd, layers, heads, ff, ctx, seed: 1, f16 };
}

/** ~0.5 MB F32: the test and demo model. */
export const TEST_PRESET: ResolvedTinyOptions = preset(SHAPES.tiny, false);

/** ~55 MB F16: compute-bound enough for benchmarks. */
export const BENCH_PRESET: ResolvedTinyOptions = preset(SHAPES["tiny-bench"], true);

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

/** The tiny model as a llama shape: full multi-head attention, rope base 10000, no rope scaling. */
function tinyShape(o: ResolvedTinyOptions): LlamaShape {
  const { name, vocab, embd, layers, heads, ff, ctx } = o;
  return {
    name,
    vocab,
    embd,
    layers,
    heads,
    kvHeads: heads,
    ff,
    ctx,
    ropeBase: 10000,
    rmsEps: 1e-5,
    tiedEmbeddings: false,
  };
}

interface TensorSpec {
  info: TensorInfo;
  data: Float32Array;
}

/** Every tensor's values, drawn per element from one seeded stream in file order (small models only). */
function buildTensors(o: ResolvedTinyOptions): TensorSpec[] {
  const rnd = seededRandom(o.seed);
  const uniform = (n: number, scale: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = (rnd() * 2 - 1) * scale;
    return a;
  };
  const matScale = (fanIn: number) => Math.sqrt(3 / fanIn); // unit variance activations
  return llamaTensorPlan(tinyShape(o)).map((t) => {
    const n = t.dims.reduce((a, b) => a * b, 1);
    let data: Float32Array;
    if (t.role === "norm") data = new Float32Array(n).fill(1);
    else if (t.role === "token_embd") data = uniform(n, 1);
    else if (t.role === "matrix") data = uniform(n, matScale(t.fanIn));
    else {
      // output.weight (the tiny shape has no rope_freqs). Logits with a spread of ~10: the zeroed (silenced) rows then stay out of reach even when
      // sampling at temperature 1, not only under greedy decoding.
      data = uniform(n, 10 * matScale(o.embd));
      for (let id = 0; id < o.vocab; id++) if (isSilenced(id)) data.fill(0, id * o.embd, (id + 1) * o.embd);
    }
    const f16 = o.f16 && t.role !== "norm";
    return {
      info: {
        name: t.name,
        dims: t.dims,
        ggmlType: f16 ? GGML_TYPE.F16 : GGML_TYPE.F32,
        bytes: n * (f16 ? 2 : 4),
      },
      data,
    };
  });
}

/** The whole file as bytes. */
export function encodeTinyGguf(opts: TinyModelOptions = {}): Buffer {
  const o = resolveTinyOptions(opts);
  const kv = llamaMetadata(tinyShape(o), {
    name: o.name,
    fileType: o.f16 ? 1 : 0,
    alignment: GGUF_ALIGNMENT,
    quantized: false,
  });
  const tensors = buildTensors(o);
  const { header, offsets, totalBytes } = encodeGgufHeader(
    kv,
    tensors.map((t) => t.info),
  );
  const out = Buffer.alloc(totalBytes);
  header.copy(out);
  tensors.forEach((t, i) => {
    const at = header.length + offsets[i]!;
    if (t.info.ggmlType === GGML_TYPE.F16) encodeF16(t.data).copy(out, at);
    else out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
  });
  return out;
}

function writeAtomic(path: string, data: Buffer | string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileAtomicSync(path, data, 0o644);
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
