// Which GPU architectures a CUDA library holds code for: walks the .nv_fatbin section's container
// and entry headers with positional reads, skipping every payload (most of a 160 MB library).
import { ElfError, type ElfFile, withElf } from "./elf.js";

/** "" plain, "a" arch-specific (sm_90a: that exact cc only), "f" family-specific (sm_100f). */
export type ArchVariant = "" | "a" | "f";

export interface SassTarget {
  /** SM number: 86 = cc 8.6, 120 = cc 12.0. */
  arch: number;
  variant?: ArchVariant;
}

export interface PtxTarget {
  arch: number;
  /** PTX ISA version, "9.1": decides which drivers can JIT-compile it. */
  isaVersion: string;
  variant?: ArchVariant;
}

export interface FatbinArchitectures {
  /** SM numbers with machine code (any variant), ascending. */
  sass: number[];
  /** Distinct (arch, ISA, variant) PTX targets, ascending by arch. */
  ptx: PtxTarget[];
  /** Distinct SASS (arch, variant) pairs, ascending. */
  sassTargets: SassTarget[];
  /** Entry headers read. */
  entries: number;
}

const FATBIN_MAGIC = 0xba55ed50;
const KIND_PTX = 1;
const KIND_ELF = 2;
/** Entry flag bits, established by compiling sm_90a/sm_100f/sm_120a kernels with nvcc 13.0. */
const FLAG_ARCH_SPECIFIC = 0x10_0000n;
const FLAG_FAMILY_SPECIFIC = 0x20_0000n;
const CONTAINER_HEADER = 16;
const ENTRY_HEADER_MIN = 64;
/** Bytes fetched per read: a whole entry header (64, 80, 96 or 112 bytes) and some padding. */
const WINDOW = 512;

/** SASS and PTX targets of a library's .nv_fatbin; null when it has none (not a CUDA library). */
export function fatbinArchitectures(path: string): Promise<FatbinArchitectures | null> {
  return withElf(path, async (elf) => {
    const sec = elf.section(".nv_fatbin");
    if (!sec) return null;
    return walk(elf, sec.offset, sec.size);
  });
}

/** "sm_90a" / "sm_86" / "compute_90". */
export function archLabel(arch: number, variant: ArchVariant = "", kind: "sass" | "ptx" = "sass"): string {
  return `${kind === "sass" ? "sm" : "compute"}_${arch}${variant}`;
}

function variantOf(flags: bigint): ArchVariant {
  if (flags & FLAG_ARCH_SPECIFIC) return "a";
  if (flags & FLAG_FAMILY_SPECIFIC) return "f";
  return "";
}

/** A small read-through cache over the file: most reads are a header or a padding probe. */
class Reader {
  #at = -1;
  #buf: Buffer = Buffer.alloc(0);
  constructor(
    private readonly elf: ElfFile,
    private readonly end: number,
  ) {}
  async get(offset: number, length: number): Promise<Buffer> {
    if (offset < this.#at || offset + length > this.#at + this.#buf.length) {
      const want = Math.min(Math.max(length, WINDOW), this.end - offset);
      if (want < length) throw new ElfError("truncated", this.elf.path, `.nv_fatbin ends inside a header`);
      this.#buf = await this.elf.read(offset, want);
      this.#at = offset;
    }
    return this.#buf.subarray(offset - this.#at, offset - this.#at + length);
  }
}

async function walk(elf: ElfFile, start: number, size: number): Promise<FatbinArchitectures> {
  const end = start + size;
  if (end > elf.fileSize)
    throw new ElfError("truncated", elf.path, `.nv_fatbin runs past the end of the file`);
  const r = new Reader(elf, end);
  const sass = new Map<string, SassTarget>();
  const ptx = new Map<string, PtxTarget>();
  let entries = 0;
  let p = start;
  while (p + CONTAINER_HEADER <= end) {
    const h = await r.get(p, CONTAINER_HEADER);
    if (h.readUInt32LE(0) !== FATBIN_MAGIC) {
      // Padding between containers: probe the next 8-byte boundary (from the section's start).
      p = start + (Math.floor((p - start) / 8) + 1) * 8;
      continue;
    }
    const headerSize = h.readUInt16LE(6);
    const fatEnd = p + headerSize + num(h.readBigUInt64LE(8), elf.path);
    if (headerSize < CONTAINER_HEADER || fatEnd > end)
      throw new ElfError("malformed", elf.path, `fatbin container at ${p} overruns .nv_fatbin`);
    let q = p + headerSize;
    while (q + ENTRY_HEADER_MIN <= fatEnd) {
      const e = await r.get(q, ENTRY_HEADER_MIN);
      const kind = e.readUInt16LE(0);
      const entryHeader = e.readUInt32LE(4);
      const payload = num(e.readBigUInt64LE(8), elf.path);
      if (entryHeader < ENTRY_HEADER_MIN || q + entryHeader + payload > fatEnd)
        throw new ElfError("malformed", elf.path, `fatbin entry at ${q} overruns its container`);
      const minor = e.readUInt16LE(24);
      const major = e.readUInt16LE(26);
      const arch = e.readUInt32LE(28);
      const variant = variantOf(e.readBigUInt64LE(40));
      entries++;
      if (kind === KIND_ELF) sass.set(`${arch}${variant}`, { arch, variant });
      else if (kind === KIND_PTX) {
        const isaVersion = `${major}.${minor}`;
        ptx.set(`${arch}${variant}@${isaVersion}`, { arch, isaVersion, variant });
      }
      q += entryHeader + payload;
    }
    p = fatEnd;
  }
  const byArch = (a: { arch: number; variant?: ArchVariant }, b: { arch: number; variant?: ArchVariant }) =>
    a.arch - b.arch || (a.variant ?? "").localeCompare(b.variant ?? "");
  const sassTargets = [...sass.values()].sort(byArch);
  return {
    sass: [...new Set(sassTargets.map((t) => t.arch))],
    ptx: [...ptx.values()].sort((a, b) => byArch(a, b) || a.isaVersion.localeCompare(b.isaVersion)),
    sassTargets,
    entries,
  };
}

function num(v: bigint, path: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ElfError("malformed", path, `size ${v} out of range`);
  return Number(v);
}
