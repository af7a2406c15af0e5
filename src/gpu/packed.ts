// Decodes the addon's packed snapshot (one Float64Array, NaN = null) into NvmlSnapshot objects:
// building objects in JS is ~10× cheaper than property-by-property through N-API. The addon names
// its packed values (packedFields, packedStrings); the decoder finds each one by name once, at
// load, so a layout change on either side is an error naming the field, never shifted numbers.
// The facts it copies are the one list in nvml-fields.ts, each under its name.
import type {
  NvmlDevice,
  NvmlDeviceOk,
  NvmlPackedLayout,
  NvmlPackedSnapshot,
  NvmlSnapshot,
} from "../../binding.js";
import { NVML_FLAGS, NVML_NUMBERS } from "./nvml-fields.js";

export type Unpack = (p: NvmlPackedSnapshot) => NvmlSnapshot;

/** The addon's packed layout lacks a value this decoder needs. */
export class PackedLayoutError extends Error {
  override readonly name = "PackedLayoutError";
}

function indexer(have: readonly string[], what: string): (name: string) => number {
  return (name) => {
    const i = have.indexOf(name);
    if (i < 0)
      throw new PackedLayoutError(`the NVML addon's ${what} lack "${name}" (it has: ${have.join(", ")})`);
    return i;
  };
}

const num = (x: number): number | null => (Number.isNaN(x) ? null : x);
const flag = (x: number): boolean | null => (Number.isNaN(x) ? null : x !== 0);

type DeviceBuilder = (
  n: Float64Array,
  o: number,
  index: number,
  name: string | null,
  uuid: string | null,
  pciBusId: string | null,
  computeCapability: NvmlDeviceOk["computeCapability"],
  processes: NvmlDeviceOk["processes"],
) => NvmlDeviceOk;

/**
 * One object literal per device, generated once from the fact lists and this layout's offsets:
 * every device gets the same fast shape (an object grown key by key from the list decoded 10-50x
 * slower, which is what the packed form exists to avoid). The names are the fixed lists of
 * nvml-fields.ts, checked to be plain identifiers; the offsets are numbers.
 */
function deviceBuilder(
  numbers: readonly (readonly [string, number])[],
  flags: readonly (readonly [string, number])[],
): DeviceBuilder {
  const read =
    (fn: string) =>
    ([f, at]: readonly [string, number]) => {
      if (!/^[A-Za-z][A-Za-z0-9]*$/.test(f) || !Number.isInteger(at))
        throw new Error(`bad packed field ${f}`);
      return `${f}: ${fn}(n[o + ${at}])`;
    };
  const facts = [...numbers.map(read("num")), ...flags.map(read("flag"))].join(", ");
  const body = `return (n, o, index, name, uuid, pciBusId, computeCapability, processes) => ({ index, error: null, name, uuid, pciBusId, ${facts}, computeCapability, processes });`;
  return new Function("num", "flag", body)(num, flag) as DeviceBuilder;
}

/** Builds the decoder for this layout; throws PackedLayoutError naming the first missing value. */
export function packedDecoder(layout: NvmlPackedLayout): Unpack {
  const stride = layout.packedFields.length;
  const sStride = layout.packedStrings.length;
  const at = indexer(layout.packedFields, "packedFields");
  const sAt = indexer(layout.packedStrings, "packedStrings");
  // Offsets within a device's slice, looked up once; the loop below only adds and reads.
  const numbers = NVML_NUMBERS.map((f) => [f, at(f)] as const);
  const flags = NVML_FLAGS.map((f) => [f, at(f)] as const);
  const ccMajor = at("computeCapabilityMajor");
  const ccMinor = at("computeCapabilityMinor");
  const errorCode = at("errorCode");
  const processCount = at("processCount");
  const name = sAt("name");
  const uuid = sAt("uuid");
  const pciBusId = sAt("pciBusId");
  const errorMessage = sAt("errorMessage");
  const device = deviceBuilder(numbers, flags);

  return (p) => {
    const n = p.numbers;
    if (n.length !== p.count * stride || p.strings.length !== p.count * sStride) {
      throw new PackedLayoutError(`packed snapshot of ${p.count} devices does not match its layout`);
    }
    const v = (i: number): number | null => num(n[i]!);
    const str = (i: number): string | null => p.strings[i] ?? null;
    const devices: NvmlDevice[] = new Array(p.count);
    // Each device's (pid, usedMemoryBytes) pairs follow the previous devices' pairs.
    let procAt = 0;
    for (let d = 0; d < p.count; d++) {
      const o = d * stride;
      const s = d * sStride;
      const procCount = v(o + processCount);
      const procStart = procAt;
      procAt += procCount ?? 0;
      const code = v(o + errorCode);
      if (code !== null) {
        devices[d] = {
          index: d,
          error: { code, message: str(s + errorMessage) ?? "" },
          name: str(s + name),
          uuid: str(s + uuid),
        };
        continue;
      }
      let processes: { pid: number; usedMemoryBytes: number | null }[] | null = null;
      if (procCount !== null) {
        processes = new Array(procCount);
        for (let k = 0; k < procCount; k++) {
          const q = (procStart + k) * 2;
          const mem = p.processes[q + 1]!;
          processes[k] = { pid: p.processes[q]!, usedMemoryBytes: Number.isNaN(mem) ? null : mem };
        }
      }
      const major = v(o + ccMajor);
      const minor = v(o + ccMinor);
      const cc = major !== null && minor !== null ? { major, minor } : null;
      devices[d] = device(n, o, d, str(s + name), str(s + uuid), str(s + pciBusId), cc, processes);
    }
    return {
      driverVersion: p.driverVersion,
      nvmlVersion: p.nvmlVersion,
      cudaDriverVersion: p.cudaDriverVersion,
      devices,
    };
  };
}
