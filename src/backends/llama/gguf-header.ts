// Bounded GGUF header parser (issue 8): tells a complete model file from a truncated one before it
// is advertised. Reads the header through a small window (never the whole file), caps every
// length, and answers {ok:false, reason} on any malformed input instead of throwing.
// Layout (GGUF v2/v3, little-endian): "GGUF", u32 version, u64 tensor count, u64 KV count, the KV
// entries, the tensor infos (name, n_dims, dims, ggml type, offset), padding to `general.alignment`
// (default 32), then the tensor data. A tensor's bytes are (ne0 / block size) * type size * ne1...
import { closeSync, fstatSync, openSync, readSync, statSync } from "node:fs";

/** [elements per block, bytes per block] by ggml type id, as ggml reports them (checked by a test). */
const GGML_TYPE_SIZES: ReadonlyMap<number, readonly [number, number]> = new Map([
  [0, [1, 4]], // F32
  [1, [1, 2]], // F16
  [2, [32, 18]], // Q4_0
  [3, [32, 20]], // Q4_1
  [6, [32, 22]], // Q5_0
  [7, [32, 24]], // Q5_1
  [8, [32, 34]], // Q8_0
  [9, [32, 36]], // Q8_1
  [10, [256, 84]], // Q2_K
  [11, [256, 110]], // Q3_K
  [12, [256, 144]], // Q4_K
  [13, [256, 176]], // Q5_K
  [14, [256, 210]], // Q6_K
  [15, [256, 292]], // Q8_K
  [16, [256, 66]], // IQ2_XXS
  [17, [256, 74]], // IQ2_XS
  [18, [256, 98]], // IQ3_XXS
  [19, [256, 50]], // IQ1_S
  [20, [32, 18]], // IQ4_NL
  [21, [256, 110]], // IQ3_S
  [22, [256, 82]], // IQ2_S
  [23, [256, 136]], // IQ4_XS
  [24, [1, 1]], // I8
  [25, [1, 2]], // I16
  [26, [1, 4]], // I32
  [27, [1, 8]], // I64
  [28, [1, 8]], // F64
  [29, [256, 56]], // IQ1_M
  [30, [1, 2]], // BF16
  [34, [256, 54]], // TQ1_0
  [35, [256, 66]], // TQ2_0
  [39, [32, 17]], // MXFP4
  [40, [64, 36]], // NVFP4
  [41, [128, 18]], // Q1_0
  [42, [64, 18]], // Q2_0
]);

/** Block geometry of a ggml type, or undefined when this build does not know it. */
export function ggmlTypeSize(type: number): readonly [number, number] | undefined {
  return GGML_TYPE_SIZES.get(type);
}

/** Caps that keep a hostile or corrupt header from costing memory or time. */
export const GGUF_LIMITS = {
  /** Real headers (a 256k vocabulary with merges) are about 15 MB. */
  maxHeaderBytes: 64 * 2 ** 20,
  maxStringBytes: 2 ** 20,
  maxTensors: 2 ** 20,
  maxKvs: 2 ** 20,
  maxDims: 4, // GGML_MAX_DIMS
} as const;

const WINDOW_BYTES = GGUF_LIMITS.maxStringBytes + 64;
const DEFAULT_ALIGNMENT = 32;

export type GgufHeaderResult =
  | {
      ok: true;
      version: number;
      tensorCount: number;
      kvCount: number;
      alignment: number;
      /** Where the tensor data starts (header end, aligned). */
      dataOffset: number;
      /** Bytes the file needs to hold every tensor; null when a tensor type is unknown here. */
      requiredBytes: number | null;
      fileBytes: number;
      /** Why the size could not be checked (requiredBytes null), for a debug line. */
      unchecked?: string;
    }
  | { ok: false; reason: string; truncated?: boolean };

/** Thrown inside the parser only; turned into {ok:false} at the top. */
class Refuse extends Error {
  constructor(
    readonly reason: string,
    readonly truncated = false,
  ) {
    super(reason);
  }
}

const RE_DOWNLOAD = "the file is incomplete: download it again";

/** "12.3 MB" (decimal, like download tools); reasons add the exact bytes, which rounding hides. */
function mb(n: number | bigint): string {
  return `${(Number(n) / 1e6).toFixed(1)} MB`;
}

export function truncatedReason(have: number, need: number | bigint): string {
  return `truncated: ${mb(have)} of ${mb(need)} (${have} of ${need} bytes); ${RE_DOWNLOAD}`;
}

/** Sequential reader over the file through one bounded window. */
class Reader {
  pos = 0;
  private buf = Buffer.alloc(0);
  private bufStart = 0;
  private bufLen = 0;

  constructor(
    private readonly fd: number,
    readonly fileBytes: number,
  ) {}

  /** Refuse a read that would end past the file or the header cap. */
  private bound(end: bigint): void {
    if (end > BigInt(this.fileBytes)) {
      throw new Refuse(
        `truncated: the GGUF header runs past the end of the file (${mb(this.fileBytes)}, ` +
          `${this.fileBytes} bytes); ${RE_DOWNLOAD}`,
        true,
      );
    }
    if (end > BigInt(GGUF_LIMITS.maxHeaderBytes))
      throw new Refuse(`GGUF header larger than ${GGUF_LIMITS.maxHeaderBytes} bytes: not a usable model`);
  }

  /** `n` (at most the window) bytes at `pos`, read from the file only when outside the window. */
  private need(n: number): Buffer {
    const end = this.pos + n;
    this.bound(BigInt(end));
    if (this.pos < this.bufStart || end > this.bufStart + this.bufLen) {
      const len = Math.min(Math.max(n, WINDOW_BYTES), this.fileBytes - this.pos);
      if (this.buf.length < len) this.buf = Buffer.alloc(len);
      const got = readSync(this.fd, this.buf, 0, len, this.pos);
      if (got < n) throw new Refuse(`short read at byte ${this.pos}: ${RE_DOWNLOAD}`, true);
      this.bufStart = this.pos;
      this.bufLen = got;
    }
    const off = this.pos - this.bufStart;
    this.pos = end;
    return this.buf.subarray(off, off + n);
  }

  /** Move past `n` bytes without reading them (fixed-size arrays). */
  skip(n: number | bigint): void {
    if (
      typeof n === "number" &&
      this.pos + n <= this.fileBytes &&
      this.pos + n <= GGUF_LIMITS.maxHeaderBytes
    ) {
      this.pos += n; // the common case, without BigInt
      return;
    }
    const end = BigInt(this.pos) + BigInt(n);
    this.bound(end);
    this.pos = Number(end);
  }

  u8(): number {
    return this.need(1).readUInt8(0);
  }
  u32(): number {
    return this.need(4).readUInt32LE(0);
  }
  u64(): bigint {
    return this.need(8).readBigUInt64LE(0);
  }
  /** A u64 count or length as a number, refused above `cap`. */
  count(what: string, cap: number): number {
    // Two u32 halves, no BigInt: this runs once per vocabulary string (150k+ in real headers).
    const b = this.need(8);
    const hi = b.readUInt32LE(4);
    const v = hi * 2 ** 32 + b.readUInt32LE(0);
    if (hi >= 2 ** 20 || v > cap) {
      const exact = (BigInt(hi) << 32n) | BigInt(b.readUInt32LE(0));
      throw new Refuse(`${what} ${exact} exceeds the limit of ${cap}: corrupt GGUF header`);
    }
    return v;
  }
  str(what: string): string {
    const len = this.count(`${what} length`, GGUF_LIMITS.maxStringBytes);
    return this.need(len).toString("utf8");
  }
}

// GGUF metadata value types.
const T_U32 = 4;
const T_STRING = 8;
const T_ARRAY = 9;
/** Byte width of each fixed-size value type. */
const FIXED: ReadonlyMap<number, number> = new Map([
  [0, 1], // u8
  [1, 1], // i8
  [2, 2], // u16
  [3, 2], // i16
  [4, 4], // u32
  [5, 4], // i32
  [6, 4], // f32
  [7, 1], // bool
  [10, 8], // u64
  [11, 8], // i64
  [12, 8], // f64
]);

/** Skip one value of `type`; returns a u32 value when it is one (for general.alignment). */
function skipValue(r: Reader, type: number, key: string): number | undefined {
  const width = FIXED.get(type);
  if (width !== undefined) {
    if (type === T_U32) return r.u32();
    r.skip(width);
    return undefined;
  }
  if (type === T_STRING) {
    r.skip(r.count(`string length in ${key}`, GGUF_LIMITS.maxStringBytes));
    return undefined;
  }
  if (type !== T_ARRAY)
    throw new Refuse(`metadata ${key} has unknown value type ${type}: corrupt GGUF header`);
  const elem = r.u32();
  // Element counts are bounded by the header cap: every element takes at least one byte.
  const n = r.count(`array length in ${key}`, GGUF_LIMITS.maxHeaderBytes);
  const elemWidth = FIXED.get(elem);
  if (elemWidth !== undefined) r.skip(BigInt(n) * BigInt(elemWidth));
  else if (elem === T_STRING)
    for (let i = 0; i < n; i++) r.skip(r.count(`string length in ${key}`, GGUF_LIMITS.maxStringBytes));
  else throw new Refuse(`metadata ${key} is an array of type ${elem}: not supported by llama.cpp`);
  return undefined;
}

function parse(r: Reader): GgufHeaderResult {
  if (r.fileBytes < 8) throw new Refuse("not a GGUF file");
  const magic = r.u32();
  if (magic !== 0x46554747) throw new Refuse("not a GGUF file"); // "GGUF" read little-endian
  const version = r.u32();
  // A big-endian file has its small version number in the high bytes (llama.cpp's own check).
  if (version !== 0 && (version & 0xffff) === 0)
    throw new Refuse("big-endian GGUF: this host reads little-endian files only; get the little-endian file");
  if (version === 1) throw new Refuse("GGUF v1 is no longer supported by llama.cpp: get a v2/v3 file");
  if (version < 2 || version > 3) throw new Refuse(`unsupported GGUF version ${version}`);
  const tensorCount = r.count("tensor count", GGUF_LIMITS.maxTensors);
  const kvCount = r.count("metadata count", GGUF_LIMITS.maxKvs);

  let alignment = DEFAULT_ALIGNMENT;
  for (let i = 0; i < kvCount; i++) {
    const key = r.str("metadata key");
    const type = r.u32();
    const v = skipValue(r, type, JSON.stringify(key.slice(0, 80)));
    if (key === "general.alignment") {
      // llama.cpp reads it as u32 and needs a power of two.
      if (type !== T_U32 || v === undefined || v === 0 || (v & (v - 1)) !== 0)
        throw new Refuse("general.alignment is not a power-of-two u32: corrupt GGUF header");
      alignment = v;
    }
  }

  const A = BigInt(alignment);
  let end = 0n;
  let unchecked: string | undefined;
  for (let i = 0; i < tensorCount; i++) {
    const name = r.str("tensor name");
    const nDims = r.u32();
    if (nDims > GGUF_LIMITS.maxDims)
      throw new Refuse(`tensor ${JSON.stringify(name)} has ${nDims} dimensions: corrupt GGUF header`);
    const dims: bigint[] = [];
    for (let d = 0; d < nDims; d++) dims.push(r.u64());
    const type = r.u32();
    const offset = r.u64();
    if (offset % A !== 0n)
      throw new Refuse(
        `tensor ${JSON.stringify(name)} data is not aligned to ${alignment}: corrupt GGUF header`,
      );
    if (dims.some((d) => d >= 1n << 63n))
      throw new Refuse(`tensor ${JSON.stringify(name)} has a negative dimension: corrupt GGUF header`);
    const geometry = ggmlTypeSize(type);
    if (!geometry) {
      unchecked ??= `tensor ${JSON.stringify(name)} has ggml type ${type}, unknown to this check: size not verified`;
      continue;
    }
    const [block, bytes] = geometry;
    const ne0 = dims[0] ?? 1n;
    if (ne0 % BigInt(block) !== 0n)
      throw new Refuse(
        `tensor ${JSON.stringify(name)} row of ${ne0} is not a multiple of its type's block of ${block}`,
      );
    let size = (ne0 / BigInt(block)) * BigInt(bytes);
    for (const d of dims.slice(1)) size *= d;
    const tensorEnd = offset + size;
    if (tensorEnd > end) end = tensorEnd;
  }
  const dataOffset = Math.ceil(r.pos / alignment) * alignment;
  const required = BigInt(dataOffset) + end;
  if (unchecked === undefined && required > BigInt(r.fileBytes))
    throw new Refuse(truncatedReason(r.fileBytes, required), true);
  return {
    ok: true,
    version,
    tensorCount,
    kvCount,
    alignment,
    dataOffset,
    requiredBytes: unchecked === undefined ? Number(required) : null,
    fileBytes: r.fileBytes,
    ...(unchecked === undefined ? {} : { unchecked }),
  };
}

/** Parse the header of the GGUF file at `path` and check the file holds all its tensor data. */
export function readGgufHeader(path: string): GgufHeaderResult {
  let fd: number | undefined;
  try {
    // stat first: opening a FIFO or a device for reading could block or never end.
    if (!statSync(path).isFile()) return { ok: false, reason: "not a regular file" };
    fd = openSync(path, "r");
    return parse(new Reader(fd, fstatSync(fd).size));
  } catch (err) {
    if (err instanceof Refuse)
      return { ok: false, reason: err.reason, ...(err.truncated ? { truncated: true } : {}) };
    const e = err as NodeJS.ErrnoException;
    return { ok: false, reason: e.code ?? e.message ?? String(err) };
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
