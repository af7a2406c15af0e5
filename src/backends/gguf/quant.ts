// ggml weight formats the generators write (F32, F16, Q8_0, Q4_0): their block layouts, reference
// quantizers and dequantizers (ggml's quantize_row_*_ref), and the bulk path that turns random
// bytes into valid blocks in place, a few operations per block or per word, never per weight.

/** ggml type ids (ggml.h). */
export const GGML_TYPE = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8 } as const;

/** The weight types a generated model may use for its matrices (norms stay F32). */
export type WeightType = "f16" | "q8_0" | "q4_0";
export const WEIGHT_TYPES: readonly WeightType[] = ["q4_0", "q8_0", "f16"];

export interface WeightFormat {
  ggmlType: number;
  /** general.file_type (llama_ftype): 1 MOSTLY_F16, 2 MOSTLY_Q4_0, 7 MOSTLY_Q8_0. */
  fileType: number;
  blockElems: number;
  blockBytes: number;
  /** Standard deviation of a block's integers (q − 8 for Q4_0, int8 for Q8_0) when uniformly random. */
  qStd: number;
}

export const WEIGHT_FORMATS: Readonly<Record<WeightType, WeightFormat>> = {
  f16: { ggmlType: GGML_TYPE.F16, fileType: 1, blockElems: 1, blockBytes: 2, qStd: 0 },
  // Q8_0: f16 d, then 32 int8; x = d * q.
  q8_0: {
    ggmlType: GGML_TYPE.Q8_0,
    fileType: 7,
    blockElems: 32,
    blockBytes: 34,
    qStd: Math.sqrt((256 ** 2 - 1) / 12),
  },
  // Q4_0: f16 d, then 16 bytes: element j in the low nibble of byte j, element j+16 in its high
  // nibble; x = d * (q − 8).
  q4_0: {
    ggmlType: GGML_TYPE.Q4_0,
    fileType: 2,
    blockElems: 32,
    blockBytes: 18,
    qStd: Math.sqrt((16 ** 2 - 1) / 12),
  },
};

/** Bytes of a tensor of `dims` (ne0 first) in a weight format or F32. */
export function tensorBytes(format: WeightFormat | "f32", dims: readonly number[]): number {
  const n = dims.reduce((a, b) => a * b, 1);
  if (format === "f32") return n * 4;
  const ne0 = dims[0] ?? 1;
  if (ne0 % format.blockElems !== 0)
    throw new RangeError(`a row of ${ne0} is not a multiple of the block of ${format.blockElems}`);
  return (n / format.blockElems) * format.blockBytes;
}

// ---- half precision ---------------------------------------------------------------------

const f32buf = new Float32Array(1);
const u32view = new Uint32Array(f32buf.buffer);

/** IEEE 754 binary32 → binary16, round to nearest even (Node 20 has no Float16Array). */
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

/** binary16 → number (exact). */
export function fromHalf(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** F16 tensor data for these values. */
export function encodeF16(src: Float32Array): Buffer {
  const out = Buffer.alloc(src.length * 2);
  for (let i = 0; i < src.length; i++) out.writeUInt16LE(toHalf(src[i]!), i * 2);
  return out;
}

// ---- reference quantizers (ggml-quants.c) -----------------------------------------------

function blocksOf(n: number): number {
  if (n % 32 !== 0) throw new RangeError(`${n} values are not whole blocks of 32`);
  return n / 32;
}

/** quantize_row_q4_0_ref: d = max / −8 (max the value of largest magnitude), q = min(15, ⌊x/d + 8.5⌋). */
export function quantizeQ4_0(src: Float32Array): Buffer {
  const nb = blocksOf(src.length);
  const out = Buffer.alloc(nb * 18);
  for (let b = 0; b < nb; b++) {
    const x = src.subarray(b * 32, b * 32 + 32);
    let amax = 0;
    let max = 0;
    for (const v of x) {
      if (Math.abs(v) > amax) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = max / -8;
    const id = d ? 1 / d : 0;
    const o = b * 18;
    out.writeUInt16LE(toHalf(d), o);
    for (let j = 0; j < 16; j++) {
      const q0 = Math.min(15, Math.trunc(x[j]! * id + 8.5));
      const q1 = Math.min(15, Math.trunc(x[j + 16]! * id + 8.5));
      out[o + 2 + j] = q0 | (q1 << 4);
    }
  }
  return out;
}

export function dequantizeQ4_0(data: Uint8Array): Float32Array {
  const nb = data.length / 18;
  const buf = Buffer.from(data.buffer, data.byteOffset, data.length);
  const y = new Float32Array(nb * 32);
  for (let b = 0; b < nb; b++) {
    const o = b * 18;
    const d = fromHalf(buf.readUInt16LE(o));
    for (let j = 0; j < 16; j++) {
      const q = buf[o + 2 + j]!;
      y[b * 32 + j] = ((q & 0xf) - 8) * d;
      y[b * 32 + j + 16] = ((q >> 4) - 8) * d;
    }
  }
  return y;
}

/** quantize_row_q8_0_ref: d = amax / 127, q = round(x / d) (half away from zero). */
export function quantizeQ8_0(src: Float32Array): Buffer {
  const nb = blocksOf(src.length);
  const out = Buffer.alloc(nb * 34);
  for (let b = 0; b < nb; b++) {
    const x = src.subarray(b * 32, b * 32 + 32);
    let amax = 0;
    for (const v of x) amax = Math.max(amax, Math.abs(v));
    const d = amax / 127;
    const id = d ? 1 / d : 0;
    const o = b * 34;
    out.writeUInt16LE(toHalf(d), o);
    for (let j = 0; j < 32; j++) {
      const v = x[j]! * id;
      out.writeInt8(Math.sign(v) * Math.round(Math.abs(v)), o + 2 + j);
    }
  }
  return out;
}

export function dequantizeQ8_0(data: Uint8Array): Float32Array {
  const nb = data.length / 34;
  const buf = Buffer.from(data.buffer, data.byteOffset, data.length);
  const y = new Float32Array(nb * 32);
  for (let b = 0; b < nb; b++) {
    const o = b * 34;
    const d = fromHalf(buf.readUInt16LE(o));
    for (let j = 0; j < 32; j++) y[b * 32 + j] = buf.readInt8(o + 2 + j) * d;
  }
  return y;
}

/** Dequantize tensor data of a weight type (tests and checks; slow, per element). */
export function dequantize(type: WeightType, data: Uint8Array): Float32Array {
  if (type === "q4_0") return dequantizeQ4_0(data);
  if (type === "q8_0") return dequantizeQ8_0(data);
  const buf = Buffer.from(data.buffer, data.byteOffset, data.length);
  const y = new Float32Array(data.length / 2);
  for (let i = 0; i < y.length; i++) y[i] = fromHalf(buf.readUInt16LE(i * 2));
  return y;
}

// ---- random blocks in bulk ----------------------------------------------------------------

/** F16 values of random sign and mantissa with this biased exponent have std 2^(e−15)·√(7/3). */
function f16Exponent(std: number): number {
  const e = Math.round(Math.log2(std / Math.sqrt(7 / 3))) + 15;
  if (!(e >= 1 && e <= 29)) throw new RangeError(`weight std ${std} is out of F16 range`);
  return e;
}

/** The std the bulk path actually gives for a target std (F16 rounds it to a power of two). */
export function randomWeightStd(type: WeightType, std: number): number {
  if (type === "f16") return 2 ** (f16Exponent(std) - 15) * Math.sqrt(7 / 3);
  const f = WEIGHT_FORMATS[type];
  return fromHalf(toHalf(std / f.qStd)) * f.qStd;
}

/**
 * Turn the random bytes in `bytes[0, len)` (whole blocks; `words` views the same memory from
 * offset 0) into valid weights of mean 0 and standard deviation about `std`:
 * - Q4_0 / Q8_0: the integers stay uniformly random; each block's scale is |std / qStd| with the
 *   sign of a random bit of the byte it overwrites. Random signs cancel the integers' −0.5 mean
 *   (uniform over −8..7 or −128..127), which would otherwise add up along every row.
 * - F16: random sign and mantissa, one exponent: two weights per 32-bit operation.
 */
export function shapeRandomWeights(
  type: WeightType,
  words: Uint32Array,
  bytes: Uint8Array,
  len: number,
  std: number,
): void {
  if (type === "f16") {
    const e = f16Exponent(std);
    const set = ((e << 26) | (e << 10)) >>> 0;
    const n = Math.ceil(len / 4);
    for (let i = 0; i < n; i++) words[i] = (words[i]! & 0x83ff83ff) | set;
    return;
  }
  const { blockBytes, qStd } = WEIGHT_FORMATS[type];
  const h = toHalf(std / qStd);
  if (h === 0 || h >= 0x7c00) throw new RangeError(`weight std ${std} gives a block scale out of F16 range`);
  const lo = h & 0xff;
  const hi = h >>> 8;
  for (let o = 0; o < len; o += blockBytes) {
    bytes[o + 1] = hi | (bytes[o + 1]! & 0x80);
    bytes[o] = lo;
  }
}
