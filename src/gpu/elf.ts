// Just enough ELF64 (little-endian) to inspect shared objects as large as libggml-cuda.so (160 MB)
// with positional reads: the section table by name and the DT_NEEDED entries. Nothing is mapped.
import { type FileHandle, open } from "node:fs/promises";

export type ElfErrorCode = "not_elf" | "not_elf64" | "not_little_endian" | "truncated" | "malformed";

export class ElfError extends Error {
  override readonly name = "ElfError";
  constructor(
    readonly code: ElfErrorCode,
    readonly path: string,
    detail: string,
  ) {
    super(`${path}: ${detail}`);
  }
}

export interface ElfSection {
  name: string;
  /** sh_type (1 PROGBITS, 3 STRTAB, 6 DYNAMIC, 8 NOBITS, ...). */
  type: number;
  /** Where its bytes start in the file. */
  offset: number;
  size: number;
  /** sh_link: for .dynamic, the index of its string table. */
  link: number;
  index: number;
}

const SHT_NOBITS = 8;
const DT_NULL = 0n;
const DT_NEEDED = 1n;
/** A string table or .dynamic larger than this is not something a sane linker wrote. */
const MAX_TABLE_BYTES = 64 * 1024 * 1024;

/** An open ELF64 LE file: its section table read once, any other bytes read on demand. */
export class ElfFile {
  private constructor(
    private readonly fh: FileHandle,
    readonly path: string,
    readonly fileSize: number,
    readonly sections: readonly ElfSection[],
  ) {}

  static async open(path: string): Promise<ElfFile> {
    const fh = await open(path, "r");
    try {
      const size = (await fh.stat()).size;
      const sections = await readSectionTable(fh, path, size);
      return new ElfFile(fh, path, size, sections);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  section(name: string): ElfSection | undefined {
    return this.sections.find((s) => s.name === name);
  }

  /** Exactly `length` bytes at `offset`, or an ElfError("truncated"). */
  read(offset: number, length: number): Promise<Buffer> {
    return readExact(this.fh, this.path, this.fileSize, offset, length);
  }

  /** A section's bytes (string tables, .dynamic: small ones only). */
  async sectionBytes(s: ElfSection): Promise<Buffer> {
    if (s.type === SHT_NOBITS) return Buffer.alloc(0);
    if (s.size > MAX_TABLE_BYTES) throw new ElfError("malformed", this.path, `section ${s.name} too large`);
    return this.read(s.offset, s.size);
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

/** Open, run, close. */
export async function withElf<T>(path: string, fn: (elf: ElfFile) => Promise<T>): Promise<T> {
  const elf = await ElfFile.open(path);
  try {
    return await fn(elf);
  } finally {
    await elf.close();
  }
}

/** Every section header, with its name. */
export function elfSections(path: string): Promise<ElfSection[]> {
  return withElf(path, async (elf) => [...elf.sections]);
}

/** The DT_NEEDED sonames of a shared object, in link order ([] when it has no .dynamic). */
export function neededLibraries(path: string): Promise<string[]> {
  return withElf(path, async (elf) => {
    const dyn = elf.sections.find((s) => s.name === ".dynamic");
    if (!dyn) return [];
    const strtab = elf.sections[dyn.link];
    if (!strtab) throw new ElfError("malformed", path, ".dynamic links to no string table");
    const [entries, strings] = await Promise.all([elf.sectionBytes(dyn), elf.sectionBytes(strtab)]);
    const out: string[] = [];
    for (let p = 0; p + 16 <= entries.length; p += 16) {
      const tag = entries.readBigInt64LE(p);
      if (tag === DT_NULL) break;
      if (tag === DT_NEEDED) out.push(cString(strings, toNumber(entries.readBigUInt64LE(p + 8), path), path));
    }
    return out;
  });
}

async function readExact(
  fh: FileHandle,
  path: string,
  fileSize: number,
  offset: number,
  length: number,
): Promise<Buffer> {
  if (offset < 0 || length < 0 || offset + length > fileSize)
    throw new ElfError("truncated", path, `needs bytes ${offset}..${offset + length}, file has ${fileSize}`);
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
    if (bytesRead === 0) throw new ElfError("truncated", path, `file ended at ${offset + done}`);
    done += bytesRead;
  }
  return buf;
}

function toNumber(v: bigint, path: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ElfError("malformed", path, `offset ${v} out of range`);
  return Number(v);
}

function cString(buf: Buffer, at: number, path: string): string {
  if (at >= buf.length) throw new ElfError("malformed", path, `string offset ${at} past its table`);
  const end = buf.indexOf(0, at);
  return buf.toString("utf8", at, end < 0 ? buf.length : end);
}

async function readSectionTable(fh: FileHandle, path: string, size: number): Promise<ElfSection[]> {
  if (size < 64) {
    const head = size >= 4 ? await readExact(fh, path, size, 0, 4) : Buffer.alloc(0);
    if (!head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46])))
      throw new ElfError("not_elf", path, "not an ELF file");
    throw new ElfError("truncated", path, `ELF header cut short (${size} bytes)`);
  }
  const h = await readExact(fh, path, size, 0, 64);
  if (h.readUInt32BE(0) !== 0x7f454c46) throw new ElfError("not_elf", path, "not an ELF file");
  if (h[4] !== 2) throw new ElfError("not_elf64", path, `ELF class ${h[4]}, not ELF64`);
  if (h[5] !== 1) throw new ElfError("not_little_endian", path, "big-endian ELF");
  const shoff = toNumber(h.readBigUInt64LE(0x28), path);
  const shentsize = h.readUInt16LE(0x3a);
  let shnum = h.readUInt16LE(0x3c);
  let shstrndx = h.readUInt16LE(0x3e);
  if (shoff === 0) return []; // no section table (allowed; nothing to name)
  if (shentsize < 64) throw new ElfError("malformed", path, `section header size ${shentsize}`);
  // More than 0xff00 sections: the real count and string-table index live in section 0.
  if (shnum === 0 || shstrndx === 0xffff) {
    const s0 = await readExact(fh, path, size, shoff, 64);
    if (shnum === 0) shnum = toNumber(s0.readBigUInt64LE(0x20), path);
    if (shstrndx === 0xffff) shstrndx = s0.readUInt32LE(0x28);
  }
  if (shnum * shentsize > MAX_TABLE_BYTES) throw new ElfError("malformed", path, `${shnum} sections`);
  const table = await readExact(fh, path, size, shoff, shnum * shentsize);
  const raw = Array.from({ length: shnum }, (_, i) => {
    const o = i * shentsize;
    return {
      nameAt: table.readUInt32LE(o),
      type: table.readUInt32LE(o + 4),
      offset: toNumber(table.readBigUInt64LE(o + 0x18), path),
      size: toNumber(table.readBigUInt64LE(o + 0x20), path),
      link: table.readUInt32LE(o + 0x28),
      index: i,
    };
  });
  const strSec = raw[shstrndx];
  if (!strSec) throw new ElfError("malformed", path, `section name table index ${shstrndx} of ${shnum}`);
  if (strSec.size > MAX_TABLE_BYTES) throw new ElfError("malformed", path, "section name table too large");
  const names = await readExact(fh, path, size, strSec.offset, strSec.size);
  return raw.map(({ nameAt, ...s }) => ({ ...s, name: nameAt === 0 ? "" : cString(names, nameAt, path) }));
}
