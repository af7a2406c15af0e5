// Fallback source: `nvidia-smi --query-gpu=... --format=csv,noheader,nounits`, run with execFile
// (never a shell) and a timeout. Values nvidia-smi cannot give ("[N/A]", "[Not Supported]", ...)
// become null.
import { execFile } from "node:child_process";
import type { Logger } from "../log.js";
import { emptyExtra, type GpuExtra } from "./extra.js";
import type { GpuDevice, GpuInfoSource, GpuProcess, GpuSnapshot } from "./types.js";

// What each `--query-gpu` field fills, by the name it fills; every field is asked once (SMI_GPU_FIELDS).
const DEVICE_TEXT = {
  uuid: "uuid",
  name: "name",
  pciBusId: "pci.bus_id",
  computeCapability: "compute_cap",
} as const;
const DEVICE_NUMBERS = {
  index: "index",
  memoryTotalMiB: "memory.total",
  memoryUsedMiB: "memory.used",
  memoryFreeMiB: "memory.free",
  utilizationGpuPct: "utilization.gpu",
  utilizationMemoryPct: "utilization.memory",
  temperatureC: "temperature.gpu",
  powerDrawW: "power.draw",
  powerLimitW: "power.limit",
} as const satisfies Partial<Record<keyof GpuDevice, string>>;
/** Extras under their GpuExtra (NVML) name. */
const EXTRA_NUMBERS = {
  powerEnforcedLimitW: "enforced.power.limit",
  smClockMHz: "clocks.sm",
  memClockMHz: "clocks.mem",
  smClockMaxMHz: "clocks.max.sm",
  memClockMaxMHz: "clocks.max.mem",
  fanPct: "fan.speed",
  eccUncorrectedVolatile: "ecc.errors.uncorrected.volatile.total",
  pcieLinkGen: "pcie.link.gen.current",
  pcieLinkWidth: "pcie.link.width.current",
  pcieLinkGenMax: "pcie.link.gen.max",
  pcieLinkWidthMax: "pcie.link.width.max",
} as const satisfies Partial<Record<keyof GpuExtra, string>>;
/** "Enabled" / "Disabled". */
const EXTRA_FLAGS = { eccModeCurrent: "ecc.mode.current", eccModePending: "ecc.mode.pending" } as const;

/** The query fields, in column order. compute_cap needs a driver from 2021 or later. */
export const SMI_GPU_FIELDS = [
  ...Object.values(DEVICE_TEXT),
  "driver_version",
  ...Object.values(DEVICE_NUMBERS),
  ...Object.values(EXTRA_NUMBERS),
  ...Object.values(EXTRA_FLAGS),
  "pstate",
] as const;

export const SMI_APP_FIELDS = ["gpu_uuid", "pid", "used_memory"] as const;

export class SmiParseError extends Error {
  override readonly name = "SmiParseError";
}

/** "[N/A]", "N/A", "[Not Supported]", "[Unknown Error]", "" → null. */
function clean(raw: string | undefined): string | null {
  if (raw === undefined) return null;
  const v = raw.trim();
  if (v === "" || v === "N/A" || (v.startsWith("[") && v.endsWith("]"))) return null;
  return v;
}

function num(raw: string | undefined): number | null {
  const v = clean(raw);
  if (v === null) return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

function enabled(raw: string | undefined): boolean | null {
  const v = clean(raw)?.toLowerCase();
  return v === "enabled" ? true : v === "disabled" ? false : null;
}

function splitCsv(line: string): string[] {
  // nvidia-smi writes ", " between fields and does not quote; a GPU name never holds a comma.
  return line.split(",").map((s) => s.trim());
}

function lines(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "");
}

export interface SmiGpuRow {
  device: GpuDevice;
  driverVersion: string | null;
}

/** Parse `--query-gpu` output for `fields` (defaults to SMI_GPU_FIELDS). */
export function parseSmiGpuCsv(text: string, fields: readonly string[] = SMI_GPU_FIELDS): SmiGpuRow[] {
  return lines(text).map((line, row) => {
    const cols = splitCsv(line);
    if (cols.length !== fields.length) {
      throw new SmiParseError(`nvidia-smi row ${row + 1}: ${cols.length} columns, expected ${fields.length}`);
    }
    const get = (f: string): string | undefined => {
      const i = fields.indexOf(f);
      return i < 0 ? undefined : cols[i];
    };
    const read = <K extends string, V>(table: Record<K, string>, parse: (raw: string | undefined) => V) =>
      Object.fromEntries(Object.entries<string>(table).map(([k, f]) => [k, parse(get(f))])) as Record<K, V>;
    const text = read(DEVICE_TEXT, clean);
    const numbers = read(DEVICE_NUMBERS, num);
    if (numbers.index === null || text.uuid === null) {
      throw new SmiParseError(`nvidia-smi row ${row + 1}: no index/uuid`);
    }
    const pstate = clean(get("pstate"));
    const extra: GpuExtra = {
      ...emptyExtra(),
      ...read(EXTRA_NUMBERS, num),
      ...read(EXTRA_FLAGS, enabled),
      pstate: pstate && /^P\d+$/.test(pstate) ? Number(pstate.slice(1)) : null,
    };
    const device: GpuDevice = {
      ...numbers,
      index: numbers.index,
      uuid: text.uuid,
      name: text.name ?? "unknown",
      pciBusId: text.pciBusId,
      computeCapability: text.computeCapability,
      processes: null,
      extra: { ...extra },
      error: null,
    };
    return { device, driverVersion: clean(get("driver_version")) };
  });
}

/** Parse `--query-compute-apps=gpu_uuid,pid,used_memory` into per-UUID process lists. */
export function parseSmiAppsCsv(text: string): Map<string, GpuProcess[]> {
  const out = new Map<string, GpuProcess[]>();
  for (const line of lines(text)) {
    if (line.startsWith("No running")) continue;
    const [uuidRaw, pidRaw, memRaw] = splitCsv(line);
    const uuid = clean(uuidRaw);
    const pid = num(pidRaw);
    if (uuid === null || pid === null) continue;
    const list = out.get(uuid) ?? [];
    list.push({ pid, usedMemoryMiB: num(memRaw) });
    out.set(uuid, list);
  }
  return out;
}

export interface SmiRunOptions {
  command?: string;
  timeoutMs?: number;
}

function run(args: string[], opts: SmiRunOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      opts.command ?? "nvidia-smi",
      args,
      { timeout: opts.timeoutMs ?? 10_000, maxBuffer: 4 * 1024 * 1024, encoding: "utf8", shell: false },
      (err, stdout, stderr) => {
        if (err) {
          const detail = stderr.trim() || stdout.trim();
          reject(
            new Error(`${opts.command ?? "nvidia-smi"} failed: ${err.message}${detail ? `: ${detail}` : ""}`),
          );
        } else resolve(stdout);
      },
    );
  });
}

export class SmiGpuSource implements GpuInfoSource {
  readonly kind = "nvidia-smi" as const;
  private fields: readonly string[] = SMI_GPU_FIELDS;
  private cuda: string | null | undefined;

  constructor(
    readonly reason: string,
    private readonly opts: SmiRunOptions & { log: Logger },
  ) {}

  private async queryGpus(): Promise<SmiGpuRow[]> {
    const args = (f: readonly string[]) => [`--query-gpu=${f.join(",")}`, "--format=csv,noheader,nounits"];
    try {
      return parseSmiGpuCsv(await run(args(this.fields), this.opts), this.fields);
    } catch (err) {
      // Old drivers reject unknown fields (compute_cap): retry once without it.
      if (this.fields.includes("compute_cap") && /not a valid field/i.test((err as Error).message)) {
        this.fields = SMI_GPU_FIELDS.filter((f) => f !== "compute_cap");
        return parseSmiGpuCsv(await run(args(this.fields), this.opts), this.fields);
      }
      throw err;
    }
  }

  private async cudaVersion(): Promise<string | null> {
    // Only the banner of plain `nvidia-smi` names the CUDA driver version; read it once.
    if (this.cuda === undefined) {
      try {
        this.cuda = /CUDA Version:\s*([\d.]+)/.exec(await run([], this.opts))?.[1] ?? null;
      } catch {
        this.cuda = null;
      }
    }
    return this.cuda;
  }

  async snapshot(): Promise<GpuSnapshot> {
    const rows = await this.queryGpus();
    let apps: Map<string, GpuProcess[]> | null = null;
    try {
      apps = parseSmiAppsCsv(
        await run(
          [`--query-compute-apps=${SMI_APP_FIELDS.join(",")}`, "--format=csv,noheader,nounits"],
          this.opts,
        ),
      );
    } catch (err) {
      this.opts.log.debug({ event: "smi_apps_failed", err: (err as Error).message }, "no process list");
    }
    const cuda = await this.cudaVersion();
    return {
      source: "nvidia-smi",
      reason: this.reason,
      driverVersion: rows[0]?.driverVersion ?? null,
      cudaDriverVersion: cuda,
      nvmlVersion: null,
      devices: rows.map((r) => ({ ...r.device, processes: apps ? (apps.get(r.device.uuid) ?? []) : null })),
      takenAt: Date.now(),
    };
  }

  async close(): Promise<void> {}
}
