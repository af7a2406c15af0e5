// Fallback source: `nvidia-smi --query-gpu=... --format=csv,noheader,nounits`, run with execFile
// (never a shell) and a timeout. Values nvidia-smi cannot give ("[N/A]", "[Not Supported]", ...)
// become null.
import { execFile } from "node:child_process";
import type { Logger } from "../log.js";
import { emptyExtra, type GpuExtra } from "./extra.js";
import type { GpuDevice, GpuInfoSource, GpuProcess, GpuSnapshot } from "./types.js";

/** The query fields, in column order. compute_cap needs a driver from 2021 or later. */
export const SMI_GPU_FIELDS = [
  "index",
  "uuid",
  "name",
  "pci.bus_id",
  "driver_version",
  "memory.total",
  "memory.used",
  "memory.free",
  "utilization.gpu",
  "utilization.memory",
  "temperature.gpu",
  "power.draw",
  "power.limit",
  "enforced.power.limit",
  "clocks.sm",
  "clocks.mem",
  "clocks.max.sm",
  "clocks.max.mem",
  "fan.speed",
  "pstate",
  "pcie.link.gen.current",
  "pcie.link.width.current",
  "pcie.link.gen.max",
  "pcie.link.width.max",
  "ecc.mode.current",
  "ecc.mode.pending",
  "ecc.errors.uncorrected.volatile.total",
  "compute_cap",
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
    const index = num(get("index"));
    const uuid = clean(get("uuid"));
    if (index === null || uuid === null) throw new SmiParseError(`nvidia-smi row ${row + 1}: no index/uuid`);
    const pstate = clean(get("pstate"));
    const pstateNum = pstate && /^P\d+$/.test(pstate) ? Number(pstate.slice(1)) : null;
    const extra: GpuExtra = {
      ...emptyExtra(),
      powerEnforcedLimitW: num(get("enforced.power.limit")),
      smClockMHz: num(get("clocks.sm")),
      memClockMHz: num(get("clocks.mem")),
      smClockMaxMHz: num(get("clocks.max.sm")),
      memClockMaxMHz: num(get("clocks.max.mem")),
      fanPct: num(get("fan.speed")),
      pstate: pstateNum,
      eccModeCurrent: enabled(get("ecc.mode.current")),
      eccModePending: enabled(get("ecc.mode.pending")),
      eccUncorrectedVolatile: num(get("ecc.errors.uncorrected.volatile.total")),
      pcieLinkGen: num(get("pcie.link.gen.current")),
      pcieLinkWidth: num(get("pcie.link.width.current")),
      pcieLinkGenMax: num(get("pcie.link.gen.max")),
      pcieLinkWidthMax: num(get("pcie.link.width.max")),
    };
    const device: GpuDevice = {
      index,
      uuid,
      name: clean(get("name")) ?? "unknown",
      pciBusId: clean(get("pci.bus_id")),
      memoryTotalMiB: num(get("memory.total")),
      memoryUsedMiB: num(get("memory.used")),
      memoryFreeMiB: num(get("memory.free")),
      utilizationGpuPct: num(get("utilization.gpu")),
      utilizationMemoryPct: num(get("utilization.memory")),
      temperatureC: num(get("temperature.gpu")),
      powerDrawW: num(get("power.draw")),
      powerLimitW: num(get("power.limit")),
      computeCapability: clean(get("compute_cap")),
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
