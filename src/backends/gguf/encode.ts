// GGUF v3 header encoding shared by the tiny and the streaming generators: metadata entries and
// tensor infos into one buffer, tensor offsets aligned as llama.cpp requires (little-endian).

/** A metadata value: the GGUF value types the generators use. */
export type KvValue =
  | { t: "u32"; v: number }
  | { t: "f32"; v: number }
  | { t: "bool"; v: boolean }
  | { t: "string"; v: string }
  | { t: "strings"; v: readonly string[] }
  | { t: "f32s"; v: readonly number[] }
  | { t: "i32s"; v: readonly number[] };

export type KvEntry = readonly [key: string, value: KvValue];

/** One tensor as the header describes it; `bytes` is its data length without padding. */
export interface TensorInfo {
  name: string;
  /** ggml order: ne0 (the row length) first. */
  dims: readonly number[];
  ggmlType: number;
  bytes: number;
}

export interface EncodedHeader {
  /** Magic through tensor infos, padded to the alignment: the file's first bytes. */
  header: Buffer;
  /** Each tensor's offset from the start of the data section (aligned). */
  offsets: number[];
  /** The data section's length: every tensor padded to the alignment. */
  dataBytes: number;
  /** header + data: the whole file. */
  totalBytes: number;
}

export const GGUF_ALIGNMENT = 32;

// GGUF metadata value type ids.
const T = { i32: 5, u32: 4, f32: 6, bool: 7, string: 8, array: 9 } as const;

export function alignUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}

/** An append-only little-endian byte writer that grows by doubling (a 128k vocabulary is ~2 MB). */
class ByteWriter {
  private buf = Buffer.alloc(1 << 16);
  length = 0;

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  u8(v: number): void {
    this.room(1);
    this.buf[this.length++] = v;
  }
  u32(v: number): void {
    this.room(4);
    this.length = this.buf.writeUInt32LE(v, this.length);
  }
  i32(v: number): void {
    this.room(4);
    this.length = this.buf.writeInt32LE(v, this.length);
  }
  u64(v: number): void {
    this.room(8);
    this.length = this.buf.writeBigUInt64LE(BigInt(v), this.length);
  }
  f32(v: number): void {
    this.room(4);
    this.length = this.buf.writeFloatLE(v, this.length);
  }
  str(s: string): void {
    const n = Buffer.byteLength(s, "utf8");
    this.u64(n);
    this.room(n);
    this.length += this.buf.write(s, this.length, "utf8");
  }
  pad(align: number): void {
    const n = alignUp(this.length, align) - this.length;
    this.room(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  done(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

type Element = "u32" | "i32" | "f32" | "bool" | "string";
type ElementValue<K extends Element> = K extends "bool" ? boolean : K extends "string" ? string : number;

/** How one value of each element type is written. */
const WRITE: { [K in Element]: (w: ByteWriter, v: ElementValue<K>) => void } = {
  u32: (w, v) => w.u32(v),
  i32: (w, v) => w.i32(v),
  f32: (w, v) => w.f32(v),
  bool: (w, v) => w.u8(v ? 1 : 0),
  string: (w, v) => w.str(v),
};

function one<K extends Element>(w: ByteWriter, t: K, v: ElementValue<K>): void {
  w.u32(T[t]);
  WRITE[t](w, v);
}

/** An array: its element type and length, then the elements. */
function many<K extends Element>(w: ByteWriter, t: K, vs: readonly ElementValue<K>[]): void {
  w.u32(T.array);
  w.u32(T[t]);
  w.u64(vs.length);
  for (const v of vs) WRITE[t](w, v);
}

/** How each metadata value is written: one element, or an array of them. */
const KV: { [K in KvValue["t"]]: (w: ByteWriter, v: Extract<KvValue, { t: K }>["v"]) => void } = {
  u32: (w, v) => one(w, "u32", v),
  f32: (w, v) => one(w, "f32", v),
  bool: (w, v) => one(w, "bool", v),
  string: (w, v) => one(w, "string", v),
  strings: (w, v) => many(w, "string", v),
  f32s: (w, v) => many(w, "f32", v),
  i32s: (w, v) => many(w, "i32", v),
};

function writeKv(w: ByteWriter, key: string, val: KvValue): void {
  w.str(key);
  // The table is keyed by `t`, so val.v is the value its writer takes.
  (KV[val.t] as (w: ByteWriter, v: KvValue["v"]) => void)(w, val.v);
}

/** The header for these metadata entries and tensors, and where each tensor's data goes. */
export function encodeGgufHeader(
  kv: readonly KvEntry[],
  tensors: readonly TensorInfo[],
  alignment = GGUF_ALIGNMENT,
): EncodedHeader {
  const w = new ByteWriter();
  w.bytes(Buffer.from("GGUF", "ascii"));
  w.u32(3);
  w.u64(tensors.length);
  w.u64(kv.length);
  for (const [k, v] of kv) writeKv(w, k, v);
  const offsets: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    w.str(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(t.ggmlType);
    w.u64(offset);
    offsets.push(offset);
    offset += alignUp(t.bytes, alignment);
  }
  w.pad(alignment);
  const header = w.done();
  return { header, offsets, dataBytes: offset, totalBytes: header.length + offset };
}
