// Typed description of the fake NVML's devices and faults, written as the key=value file that
// fake_nvml.c reads at nvmlInit (env FAKE_NVML_CONFIG).
import { appendFileSync, writeFileSync } from "node:fs";
import type { NvmlDevice, NvmlSnapshot } from "../../binding.js";

export type FakeField =
  | "name"
  | "uuid"
  | "pci"
  | "memory"
  | "utilization"
  | "temperature"
  | "power"
  | "power_limit"
  | "power_enforced"
  | "energy"
  | "clocks"
  | "max_clocks"
  | "fan"
  | "pstate"
  | "clock_reasons"
  | "ecc"
  | "ecc_errors"
  | "pcie"
  | "pcie_throughput"
  | "cc"
  | "processes"
  | "retired_pages"
  | "remapped_rows"
  | "events";

export interface FakeDevice {
  name?: string;
  uuid?: string;
  pci?: string;
  memTotalMiB?: number;
  memUsedMiB?: number;
  memReservedMiB?: number;
  utilGpu?: number;
  utilMem?: number;
  temp?: number;
  powerMw?: number;
  powerLimitMw?: number;
  powerEnforcedMw?: number;
  energyMj?: number;
  smClock?: number;
  memClock?: number;
  smClockMax?: number;
  memClockMax?: number;
  fan?: number;
  pstate?: number;
  clockReasons?: number;
  eccCurrent?: boolean;
  eccPending?: boolean;
  eccUncorrected?: number;
  pcieGen?: number;
  pcieWidth?: number;
  pcieGenMax?: number;
  pcieWidthMax?: number;
  pcieTxKBs?: number;
  pcieRxKBs?: number;
  cc?: [number, number];
  unsupported?: FakeField[];
  /** Device calls that succeed before every call returns GPU_IS_LOST. */
  lostAfter?: number;
  /** usedMiB null = NVML_VALUE_NOT_AVAILABLE. */
  processes?: { pid: number; usedMiB: number | null }[];
  /** Processes that appear between the sizing call and the fill call (pids 50000+i, (i+1) MiB). */
  processesGrow?: number;
  /** A process count every call claims (INSUFFICIENT_SIZE), however large the array offered. */
  processesClaim?: number;
  retiredPagesPending?: boolean;
  remappedRows?: { correctable: number; uncorrectable: number; pending: boolean; failure: boolean };
  /** Event types the device supports (nvmlDeviceGetSupportedEventTypes); default 0xF. */
  eventTypes?: number;
}

/** nvmlEventType* bits. */
export const EVENT_SINGLE_BIT_ECC = 0x1;
export const EVENT_DOUBLE_BIT_ECC = 0x2;
export const EVENT_XID = 0x8;

/** One line of the events file: an event on device `index`, or a failing wait (`error`: NVML code). */
export type FakeEvent = { index: number; type: number; data?: number } | { error: number };

/** Append events; the fake's nvmlEventSetWait delivers each once, in order, to sets made before. */
export function appendFakeEvents(file: string, events: FakeEvent[]): void {
  const lines = events.map((e) =>
    "error" in e ? `error ${e.error}` : `${e.index} ${e.type} ${e.data ?? 0}`,
  );
  appendFileSync(file, `${lines.join("\n")}\n`);
}

export interface FakeNvmlConfig {
  initError?: number;
  initDelayMs?: number;
  driver?: string;
  nvml?: string;
  cuda?: number;
  /** nvmlDeviceGetCount returns this code for `times` calls after `after` good ones. */
  countError?: { code: number; after: number; times: number };
  /** nvmlDeviceGetCount succeeds with this count instead for `times` calls after `after` good ones. */
  countClaim?: { count: number; after: number; times: number };
  /** The file nvmlEventSetWait reads events from (appendFakeEvents). */
  eventsFile?: string;
  devices: FakeDevice[];
}

const MiB = 1024 * 1024;

/** A realistic device; `i` varies uuid/pci so devices differ. */
export function fakeDevice(i: number, over: Partial<FakeDevice> = {}): FakeDevice {
  return {
    name: "NVIDIA H100 80GB HBM3",
    uuid: `GPU-00000000-0000-0000-0000-${String(i).padStart(12, "0")}`,
    pci: `00000000:${(i + 1).toString(16).padStart(2, "0").toUpperCase()}:00.0`,
    memTotalMiB: 81559,
    memUsedMiB: 1024 + i,
    memReservedMiB: 512,
    utilGpu: 10 + i,
    utilMem: 5 + i,
    temp: 40 + i,
    powerMw: 120_000 + i * 1000,
    powerLimitMw: 700_000,
    powerEnforcedMw: 700_000,
    energyMj: 123_456_789 + i,
    smClock: 1980,
    memClock: 2619,
    smClockMax: 1980,
    memClockMax: 2619,
    fan: 30,
    pstate: 0,
    clockReasons: 0x1,
    eccCurrent: true,
    eccPending: true,
    eccUncorrected: 0,
    pcieGen: 5,
    pcieWidth: 16,
    pcieGenMax: 5,
    pcieWidthMax: 16,
    pcieTxKBs: 1000,
    pcieRxKBs: 2000,
    cc: [9, 0],
    processes: [],
    ...over,
  };
}

function line(k: string, v: string | number | boolean | undefined): string {
  if (v === undefined) return "";
  const text = typeof v === "boolean" ? (v ? "1" : "0") : String(v);
  if (/[\r\n]/.test(text) || /[\r\n=]/.test(k)) throw new Error(`fake NVML config: bad entry ${k}`);
  return `${k}=${text}\n`;
}

export function renderFakeNvmlConfig(cfg: FakeNvmlConfig): string {
  let out = "";
  out += line("init_error", cfg.initError);
  out += line("init_delay_ms", cfg.initDelayMs);
  out += line("driver", cfg.driver);
  out += line("nvml", cfg.nvml);
  out += line("cuda", cfg.cuda);
  if (cfg.countError && cfg.countClaim)
    throw new Error("fake NVML config: countError or countClaim, not both");
  const countWindow = cfg.countError ?? cfg.countClaim;
  out += line("count_error", cfg.countError?.code);
  out += line("count_claim", cfg.countClaim?.count);
  out += line("count_error_after", countWindow?.after);
  out += line("count_error_times", countWindow?.times);
  out += line("events_file", cfg.eventsFile);
  out += line("device_count", cfg.devices.length);
  cfg.devices.forEach((d, i) => {
    const p = `dev.${i}.`;
    const bytes = (mib: number | undefined) => (mib === undefined ? undefined : Math.round(mib * MiB));
    out += line(`${p}name`, d.name);
    out += line(`${p}uuid`, d.uuid);
    out += line(`${p}pci`, d.pci);
    out += line(`${p}mem_total`, bytes(d.memTotalMiB));
    out += line(`${p}mem_used`, bytes(d.memUsedMiB));
    out += line(`${p}mem_reserved`, bytes(d.memReservedMiB));
    out += line(`${p}util_gpu`, d.utilGpu);
    out += line(`${p}util_mem`, d.utilMem);
    out += line(`${p}temp`, d.temp);
    out += line(`${p}power`, d.powerMw);
    out += line(`${p}power_limit`, d.powerLimitMw);
    out += line(`${p}power_enforced`, d.powerEnforcedMw);
    out += line(`${p}energy`, d.energyMj);
    out += line(`${p}sm_clock`, d.smClock);
    out += line(`${p}mem_clock`, d.memClock);
    out += line(`${p}sm_clock_max`, d.smClockMax);
    out += line(`${p}mem_clock_max`, d.memClockMax);
    out += line(`${p}fan`, d.fan);
    out += line(`${p}pstate`, d.pstate);
    out += line(`${p}clock_reasons`, d.clockReasons);
    out += line(`${p}ecc_current`, d.eccCurrent);
    out += line(`${p}ecc_pending`, d.eccPending);
    out += line(`${p}ecc_uncorrected`, d.eccUncorrected);
    out += line(`${p}pcie_gen`, d.pcieGen);
    out += line(`${p}pcie_width`, d.pcieWidth);
    out += line(`${p}pcie_gen_max`, d.pcieGenMax);
    out += line(`${p}pcie_width_max`, d.pcieWidthMax);
    out += line(`${p}pcie_tx`, d.pcieTxKBs);
    out += line(`${p}pcie_rx`, d.pcieRxKBs);
    out += line(`${p}cc_major`, d.cc?.[0]);
    out += line(`${p}cc_minor`, d.cc?.[1]);
    if (d.unsupported?.length) out += line(`${p}unsupported`, d.unsupported.join(","));
    out += line(`${p}lost_after`, d.lostAfter);
    if (d.processes?.length) {
      const list = d.processes.map((x) => `${x.pid}:${x.usedMiB === null ? "na" : bytes(x.usedMiB)}`);
      out += line(`${p}procs`, list.join(","));
    }
    out += line(`${p}procs_grow`, d.processesGrow);
    out += line(`${p}procs_claim`, d.processesClaim);
    out += line(`${p}retired_pending`, d.retiredPagesPending);
    out += line(`${p}remap_corr`, d.remappedRows?.correctable);
    out += line(`${p}remap_unc`, d.remappedRows?.uncorrectable);
    out += line(`${p}remap_pending`, d.remappedRows?.pending);
    out += line(`${p}remap_failure`, d.remappedRows?.failure);
    out += line(`${p}event_types`, d.eventTypes);
  });
  return out;
}

export function writeFakeNvmlConfig(file: string, cfg: FakeNvmlConfig): string {
  writeFileSync(file, renderFakeNvmlConfig(cfg));
  return file;
}

/**
 * What the addon must report for `cfg` served by the current (versioned-symbol) fake: the truth
 * the fake serves, computed from the config rather than read back through the addon. Covers a
 * device lost from the start (lostAfter 0), not one lost part-way or a growing process list.
 */
export function expectedSnapshot(cfg: FakeNvmlConfig, opts: { pcieThroughput?: boolean } = {}): NvmlSnapshot {
  const devices = cfg.devices.map((d, index): NvmlDevice => {
    if (d.lostAfter === 0) {
      // Lost from the first call, which is nvmlDeviceGetHandleByIndex.
      const message = "nvmlDeviceGetHandleByIndex: GPU is lost";
      return { index, error: { code: 15, message }, name: null, uuid: null };
    }
    if (d.lostAfter !== undefined || d.processesGrow) throw new Error("expectedSnapshot: fault not covered");
    const has = (g: FakeField) => !d.unsupported?.includes(g);
    const val = <T>(g: FakeField, v: T): T | null => (has(g) ? v : null);
    const bytes = (mib: number | undefined) => Math.round((mib ?? 0) * MiB);
    const total = bytes(d.memTotalMiB);
    const used = bytes(d.memUsedMiB);
    const reserved = bytes(d.memReservedMiB);
    const pstate = d.pstate ?? 0;
    const [major, minor] = d.cc ?? [0, 0];
    return {
      index,
      error: null,
      name: val("name", d.name ?? ""),
      uuid: val("uuid", d.uuid ?? ""),
      pciBusId: val("pci", d.pci ?? null),
      memoryTotalBytes: val("memory", total),
      memoryUsedBytes: val("memory", used),
      memoryFreeBytes: val("memory", total - used - reserved),
      memoryReservedBytes: val("memory", reserved),
      utilizationGpuPct: val("utilization", d.utilGpu ?? 0),
      utilizationMemoryPct: val("utilization", d.utilMem ?? 0),
      temperatureC: val("temperature", d.temp ?? 0),
      powerDrawMw: val("power", d.powerMw ?? 0),
      powerLimitMw: val("power_limit", d.powerLimitMw ?? 0),
      powerEnforcedLimitMw: val("power_enforced", d.powerEnforcedMw ?? 0),
      totalEnergyMj: val("energy", d.energyMj ?? 0),
      smClockMHz: val("clocks", d.smClock ?? 0),
      memClockMHz: val("clocks", d.memClock ?? 0),
      smClockMaxMHz: val("max_clocks", d.smClockMax ?? 0),
      memClockMaxMHz: val("max_clocks", d.memClockMax ?? 0),
      fanPct: val("fan", d.fan ?? 0),
      pstate: pstate >= 0 && pstate <= 15 ? val("pstate", pstate) : null,
      clockEventReasonsMask: val("clock_reasons", d.clockReasons ?? 0),
      eccModeCurrent: val("ecc", d.eccCurrent ?? false),
      eccModePending: val("ecc", d.eccPending ?? false),
      eccUncorrectedVolatile: val("ecc_errors", d.eccUncorrected ?? 0),
      retiredPagesPending: val("retired_pages", d.retiredPagesPending ?? false),
      remappedRowsCorrectable: val("remapped_rows", d.remappedRows?.correctable ?? 0),
      remappedRowsUncorrectable: val("remapped_rows", d.remappedRows?.uncorrectable ?? 0),
      remapPending: val("remapped_rows", d.remappedRows?.pending ?? false),
      remapFailure: val("remapped_rows", d.remappedRows?.failure ?? false),
      pcieLinkGen: val("pcie", d.pcieGen ?? 0),
      pcieLinkWidth: val("pcie", d.pcieWidth ?? 0),
      pcieLinkGenMax: val("pcie", d.pcieGenMax ?? 0),
      pcieLinkWidthMax: val("pcie", d.pcieWidthMax ?? 0),
      pcieTxKBs: opts.pcieThroughput ? val("pcie_throughput", d.pcieTxKBs ?? 0) : null,
      pcieRxKBs: opts.pcieThroughput ? val("pcie_throughput", d.pcieRxKBs ?? 0) : null,
      computeCapability: val("cc", { major, minor }),
      processes: val(
        "processes",
        (d.processes ?? []).map((p) => ({
          pid: p.pid,
          usedMemoryBytes: p.usedMiB === null ? null : bytes(p.usedMiB),
        })),
      ),
    };
  });
  return {
    driverVersion: cfg.driver ?? "550.54.14",
    nvmlVersion: cfg.nvml ?? "12.550.54.14",
    cudaDriverVersion: cfg.cuda ?? 12040,
    devices,
  };
}
