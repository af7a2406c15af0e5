// Streams a random-weight `llama` GGUF of any size to disk at disk speed with bounded memory:
// weights are generated in bulk per chunk (random words shaped into valid blocks) while earlier
// chunks are being written, into a temp file beside the target that is fsynced, then renamed, so
// a crash never leaves a half model under the final name. Same options → same bytes.
import { randomBytes } from "node:crypto";
import { type FileHandle, mkdir, open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { type EncodedHeader, encodeGgufHeader, GGUF_ALIGNMENT, type TensorInfo } from "./encode.js";
import { GGML_TYPE, shapeRandomWeights, tensorBytes, WEIGHT_FORMATS, type WeightType } from "./quant.js";
import { WordStream } from "./random.js";
import {
  checkShape,
  isShapeName,
  type LlamaShape,
  llama3RopeFactors,
  llamaMetadata,
  llamaTensorPlan,
  SHAPE_NAMES,
  SHAPES,
  type ShapeName,
  type TensorPlan,
} from "./shapes.js";
import { FIRST_PIECE, isSilenced } from "./vocab.js";

export interface ModelOptions {
  /** A named shape or a custom one (tests use small synthetic shapes). */
  shape: ShapeName | LlamaShape;
  type: WeightType;
  /** 0 … 2^32 − 1; default 1. */
  seed?: number;
  /** llama.context_length; default the shape's. */
  ctx?: number;
  /** general.name; default `random-<shape>-<type>`. */
  name?: string;
}

export interface PlannedTensor extends TensorPlan, TensorInfo {
  /** Absolute file offset of the tensor's data. */
  fileOffset: number;
  /** Target standard deviation of its weights (matrices). */
  std: number;
}

export interface ModelPlan extends EncodedHeader {
  shape: LlamaShape;
  type: WeightType;
  seed: number;
  name: string;
  tensors: PlannedTensor[];
}

export interface WriteProgress {
  bytesWritten: number;
  totalBytes: number;
}

export interface StreamOptions {
  /** Called after every chunk lands (every few MB): throttle before printing. */
  onProgress?: (p: WriteProgress) => void;
  /** Generation chunk size (default 4 MiB); the bytes do not depend on it. */
  chunkBytes?: number;
  /** Chunks generated ahead of the disk (default 3): memory is about chunkBytes × this. */
  buffers?: number;
}

/** Where the stream goes: positional writes, issued in file order, up to `buffers` in flight. */
export interface ModelSink {
  write(data: Uint8Array, position: number): Promise<void>;
}

export interface WriteResult {
  path: string;
  bytes: number;
  seconds: number;
}

const DEFAULT_CHUNK = 4 << 20;

function resolveShape(shape: ShapeName | LlamaShape): LlamaShape {
  if (typeof shape !== "string") return shape;
  if (!isShapeName(shape)) throw new RangeError(`unknown shape ${shape} (one of ${SHAPE_NAMES.join(", ")})`);
  return SHAPES[shape];
}

/**
 * Weight spread: matrices std 1/√fanIn (unit-variance activations); the output (or tied
 * embedding) 10/√embd so logits spread ~10 and the zeroed rows (logit 0) are never reached;
 * an untied input embedding 1/√3, as tiny-gguf.ts draws it.
 */
function targetStd(t: TensorPlan, s: LlamaShape): number {
  if (t.role === "matrix") return 1 / Math.sqrt(t.fanIn);
  if (t.role === "output" || (t.role === "token_embd" && s.tiedEmbeddings)) return 10 / Math.sqrt(s.embd);
  if (t.role === "token_embd") return 1 / Math.sqrt(3);
  return 1;
}

/** The file layout for these options: header bytes, every tensor's place and size, the total. */
export function planModel(opts: ModelOptions): ModelPlan {
  if (!Object.hasOwn(WEIGHT_FORMATS, opts.type)) throw new RangeError(`unknown weight type ${opts.type}`);
  const fmt = WEIGHT_FORMATS[opts.type];
  const base = resolveShape(opts.shape);
  const shape: LlamaShape = opts.ctx === undefined ? base : { ...base, ctx: opts.ctx };
  checkShape(shape, fmt.blockElems);
  const seed = opts.seed ?? 1;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
    throw new RangeError(`seed must be an integer in [0, 4294967295], got ${seed}`);
  const name = opts.name ?? `random-${shape.name}-${opts.type}`;
  if (!/^[A-Za-z0-9._-]{1,100}$/.test(name))
    throw new RangeError(`invalid model name ${JSON.stringify(name)}`);
  const plan = llamaTensorPlan(shape);
  const infos: TensorInfo[] = plan.map((t) => {
    const f32 = t.role === "norm" || t.role === "rope_freqs";
    return {
      name: t.name,
      dims: t.dims,
      ggmlType: f32 ? GGML_TYPE.F32 : fmt.ggmlType,
      bytes: tensorBytes(f32 ? "f32" : fmt, t.dims),
    };
  });
  const kv = llamaMetadata(shape, {
    name,
    fileType: fmt.fileType,
    alignment: GGUF_ALIGNMENT,
    quantized: opts.type !== "f16",
  });
  const enc = encodeGgufHeader(kv, infos, GGUF_ALIGNMENT);
  const tensors = plan.map((t, i) => ({
    ...t,
    ...infos[i]!,
    fileOffset: enc.header.length + enc.offsets[i]!,
    std: targetStd(t, shape),
  }));
  return { ...enc, shape, type: opts.type, seed, name, tensors };
}

/** Runs writes `buffers` deep: generation of the next chunk overlaps the disk. */
class WritePipeline {
  private readonly free: Buffer[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private failure: { err: unknown } | undefined;
  written = 0;

  constructor(
    private readonly sink: ModelSink,
    private readonly total: number,
    private readonly onProgress: ((p: WriteProgress) => void) | undefined,
    size: number,
    count: number,
  ) {
    // allocUnsafeSlow: each buffer owns its ArrayBuffer from offset 0, so a Uint32Array can view it.
    for (let i = 0; i < count; i++) this.free.push(Buffer.allocUnsafeSlow(size));
  }

  private check(): void {
    if (this.failure) throw this.failure.err;
  }

  async acquire(): Promise<Buffer> {
    while (this.free.length === 0) {
      await Promise.race(this.inflight);
      this.check();
    }
    return this.free.pop()!;
  }

  /** Write `data` at `position`; `owned` goes back to the pool once written. */
  submit(data: Uint8Array, position: number, owned?: Buffer): void {
    const p: Promise<void> = this.sink.write(data, position).then(
      () => {
        this.inflight.delete(p);
        if (owned) this.free.push(owned);
        this.written += data.length;
        try {
          this.onProgress?.({ bytesWritten: this.written, totalBytes: this.total });
        } catch (err) {
          this.failure ??= { err };
        }
      },
      (err: unknown) => {
        this.inflight.delete(p);
        this.failure ??= { err };
      },
    );
    this.inflight.add(p);
  }

  /** Wait for every write in flight (their handlers never reject), then report the first failure. */
  async drain(): Promise<void> {
    await Promise.all(this.inflight);
    this.check();
  }

  /** After a failure: let the writes in flight end before the caller closes or removes the file. */
  async settle(): Promise<void> {
    await Promise.all(this.inflight);
  }
}

/** Fill `buf` with a tensor's F32 data (norms: ones; rope_freqs: the llama3 factors). */
function f32Tensor(t: PlannedTensor, shape: LlamaShape, buf: Buffer): number {
  const values = t.role === "rope_freqs" ? llama3RopeFactors(shape) : new Float32Array(t.bytes / 4).fill(1);
  buf.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  return values.byteLength;
}

/** Zero the bytes of silenced tokens' rows that fall in [pos, pos + len) of the tensor. */
function zeroSilencedRows(t: PlannedTensor, buf: Buffer, pos: number, len: number): void {
  const rowBytes = t.bytes / t.dims[1]!;
  const rows = Math.min(FIRST_PIECE, t.dims[1]!);
  if (pos >= rows * rowBytes) return;
  for (let id = 0; id < rows; id++) {
    if (!isSilenced(id)) continue;
    const start = Math.max(id * rowBytes, pos);
    const end = Math.min((id + 1) * rowBytes, pos + len);
    if (start < end) buf.fill(0, start - pos, end - pos);
  }
}

/** Generate the model into `sink` in file order. Returns the bytes written. */
export async function streamModel(plan: ModelPlan, sink: ModelSink, o: StreamOptions = {}): Promise<number> {
  const fmt = WEIGHT_FORMATS[plan.type];
  const unit = fmt.blockBytes * 4; // whole blocks and whole 32-bit words
  const chunk = Math.max(unit, Math.floor((o.chunkBytes ?? DEFAULT_CHUNK) / unit) * unit);
  const largestF32 = Math.max(
    0,
    ...plan.tensors.filter((t) => t.ggmlType === GGML_TYPE.F32).map((t) => t.bytes),
  );
  const size = Math.max(chunk, largestF32) + GGUF_ALIGNMENT; // room for the tensor's padding
  const pipe = new WritePipeline(sink, plan.totalBytes, o.onProgress, size, Math.max(2, o.buffers ?? 3));
  try {
    pipe.submit(plan.header, 0);
    await generateTensors(plan, pipe, chunk);
    await pipe.drain();
  } catch (err) {
    await pipe.settle();
    throw err;
  }
  return pipe.written;
}

/** Every tensor's data, chunk by chunk, handed to the pipeline in file order. */
async function generateTensors(plan: ModelPlan, pipe: WritePipeline, chunk: number): Promise<void> {
  for (const [index, t] of plan.tensors.entries()) {
    const padded = Math.ceil(t.bytes / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;
    if (t.ggmlType === GGML_TYPE.F32) {
      const buf = await pipe.acquire();
      const n = f32Tensor(t, plan.shape, buf);
      buf.fill(0, n, padded);
      pipe.submit(buf.subarray(0, padded), t.fileOffset, buf);
      continue;
    }
    // Stream numbers are tensor indexes: a tensor's weights depend on the seed and its place only.
    const words = new WordStream(plan.seed, index);
    for (let pos = 0; pos < t.bytes; pos += chunk) {
      const len = Math.min(chunk, t.bytes - pos);
      const buf = await pipe.acquire();
      const view = new Uint32Array(buf.buffer, buf.byteOffset, Math.ceil(len / 4));
      words.fill(view);
      shapeRandomWeights(plan.type, view, buf, len, t.std);
      if (t.zeroRows) zeroSilencedRows(t, buf, pos, len);
      const end = pos + len === t.bytes ? padded - pos : len;
      buf.fill(0, len, end);
      pipe.submit(buf.subarray(0, end), t.fileOffset + pos, buf);
    }
  }
}

/**
 * Write the model to `path`: a temp file beside it (same directory, so the rename is atomic),
 * fsynced, renamed, then the directory fsynced. On any error the temp file is removed.
 */
export async function writeModel(
  path: string,
  opts: ModelOptions,
  o: StreamOptions = {},
): Promise<WriteResult> {
  const started = performance.now();
  const plan = planModel(opts);
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  const fh = await open(tmp, "wx", 0o644);
  try {
    try {
      const bytes = await streamModel(plan, { write: (d, pos) => writeAll(fh, d, pos) }, o);
      if (bytes !== plan.totalBytes) throw new Error(`wrote ${bytes} bytes, planned ${plan.totalBytes}`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await syncDir(dir);
  return { path, bytes: plan.totalBytes, seconds: (performance.now() - started) / 1000 };
}

/** A positional write of all of `data` (a write may return short). */
async function writeAll(fh: FileHandle, data: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < data.length; ) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

/** fsync a directory so a rename in it survives a crash (best effort: not every platform allows it). */
async function syncDir(dir: string): Promise<void> {
  try {
    const d = await open(dir, "r");
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {
    // Windows and some filesystems refuse to fsync a directory: the rename still happened.
  }
}
