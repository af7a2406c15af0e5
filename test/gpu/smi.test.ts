// nvidia-smi fallback: the CSV parser on fixture text, and the real execFile path with a fake
// `nvidia-smi` first on PATH.
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseSmiAppsCsv, parseSmiGpuCsv, readExtra, SMI_GPU_FIELDS } from "../../src/gpu/index.js";
import { SmiParseError } from "../../src/gpu/smi.js";
import { runNode, telemetryCli, tmp } from "../support/gpu.js";

// The fixture's columns by nvidia-smi field name (`nvidia-smi --help-query-gpu`).
const GPU_CSV_FIELDS = [
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
];
const GPU_CSV = [
  "0, GPU-aaaa-1111, NVIDIA A100-SXM4-40GB, 00000000:07:00.0, 535.104.05, 40960, 1000, 39500, 35, 10, 45, 80.50, 400.00, 400.00, 1410, 1215, 1410, 1215, [N/A], P0, 4, 16, 4, 16, Enabled, Enabled, 0, 8.0",
  "1, GPU-bbbb-2222, Tesla T4, 00000000:08:00.0, 535.104.05, 15360, 200, 14900, 0, 0, 30, [N/A], [Not Supported], [Not Supported], 300, 405, 1590, 5001, 0, P8, 1, 16, 3, 16, Disabled, Disabled, [N/A], 7.5",
].join("\n");
const APPS_CSV = "GPU-aaaa-1111, 4242, 900\nGPU-aaaa-1111, 77, [N/A]\n";

describe("nvidia-smi CSV parser", () => {
  it("maps columns and turns [N/A] / [Not Supported] into null", () => {
    const rows = parseSmiGpuCsv(`${GPU_CSV}\n`, GPU_CSV_FIELDS);
    expect(rows).toHaveLength(2);
    const [a, t4] = rows.map((r) => r.device);
    expect(rows[0]!.driverVersion).toBe("535.104.05");
    expect(a).toMatchObject({
      index: 0,
      uuid: "GPU-aaaa-1111",
      name: "NVIDIA A100-SXM4-40GB",
      pciBusId: "00000000:07:00.0",
      memoryTotalMiB: 40960,
      memoryUsedMiB: 1000,
      memoryFreeMiB: 39500,
      utilizationGpuPct: 35,
      temperatureC: 45,
      powerDrawW: 80.5,
      powerLimitW: 400,
      computeCapability: "8.0",
    });
    // Every column to its own fact (a field wired to the wrong name fails here).
    expect(readExtra(a!)).toMatchObject({
      powerEnforcedLimitW: 400,
      smClockMHz: 1410,
      memClockMHz: 1215,
      smClockMaxMHz: 1410,
      memClockMaxMHz: 1215,
      fanPct: null,
      pstate: 0,
      pcieLinkGen: 4,
      pcieLinkWidth: 16,
      pcieLinkGenMax: 4,
      pcieLinkWidthMax: 16,
      eccModeCurrent: true,
      eccModePending: true,
      eccUncorrectedVolatile: 0,
    });
    expect(readExtra(t4!)).toMatchObject({
      smClockMHz: 300,
      memClockMHz: 405,
      smClockMaxMHz: 1590,
      memClockMaxMHz: 5001,
      pcieLinkGen: 1,
      pcieLinkGenMax: 3,
      eccModePending: false,
    });
    expect([a!.utilizationMemoryPct, t4!.memoryUsedMiB, t4!.memoryFreeMiB]).toEqual([10, 200, 14900]);
    expect(t4!.powerDrawW).toBeNull();
    expect(t4!.powerLimitW).toBeNull();
    expect(readExtra(t4!)).toMatchObject({
      powerEnforcedLimitW: null,
      eccUncorrectedVolatile: null,
      eccModeCurrent: false,
      pstate: 8,
      fanPct: 0,
    });
  });

  it("rejects rows with the wrong number of columns", () => {
    expect(() => parseSmiGpuCsv("0, GPU-x, name", GPU_CSV_FIELDS)).toThrow(SmiParseError);
  });

  it("parses compute apps per GPU UUID", () => {
    const apps = parseSmiAppsCsv(APPS_CSV);
    expect(apps.get("GPU-aaaa-1111")).toEqual([
      { pid: 4242, usedMemoryMiB: 900 },
      { pid: 77, usedMemoryMiB: null },
    ]);
  });
});

// The two cards by field name, independent of the order the miner asks in: the fake answers
// whatever fields it is asked for, in that order, and refuses a name it does not know as
// nvidia-smi does.
const CARDS: Record<string, string>[] = GPU_CSV.split("\n").map((line) =>
  Object.fromEntries(GPU_CSV_FIELDS.map((f, i) => [f, line.split(", ")[i]!])),
);

function fakeSmiDir(): string {
  const dir = join(tmp, "fake-smi-bin");
  mkdirSync(dir, { recursive: true });
  const script = join(dir, "nvidia-smi");
  writeFileSync(
    script,
    [
      `#!${process.execPath}`,
      `const cards = ${JSON.stringify(CARDS)};`,
      `const apps = ${JSON.stringify(APPS_CSV)};`,
      "const arg = process.argv[2] ?? '';",
      "const log = process.env.FAKE_SMI_LOG;",
      "if (log) require('node:fs').appendFileSync(log, process.argv.slice(2).join(' ') + '\\n');",
      "if (arg === '') { console.log('| NVIDIA-SMI 535.104.05   Driver Version: 535.104.05   CUDA Version: 12.2 |'); process.exit(0); }",
      "if (arg.startsWith('--query-compute-apps=')) { process.stdout.write(apps); process.exit(0); }",
      "if (!arg.startsWith('--query-gpu=')) process.exit(9);",
      "const fields = arg.slice('--query-gpu='.length).split(',');",
      "for (const f of fields) {",
      "  const known = f in cards[0] && !(f === 'compute_cap' && process.env.FAKE_SMI_OLD);",
      "  if (!known) { console.error('Field \"' + f + '\" is not a valid field to query.'); process.exit(2); }",
      "}",
      "for (const c of cards) console.log(fields.map((f) => c[f]).join(', '));",
      "",
    ].join("\n"),
  );
  chmodSync(script, 0o755);
  return dir;
}

describe("nvidia-smi as a real process", () => {
  it("is the fallback when NVML cannot be loaded, and telemetry says so", async () => {
    const bin = fakeSmiDir();
    const r = await runNode(
      [telemetryCli, "telemetry", "--json", "--nvml-library", "/nonexistent/libnvidia-ml.so.1"],
      {
        PATH: `${bin}:${process.env["PATH"] ?? ""}`,
      },
    );
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.source).toBe("nvidia-smi");
    expect(doc.reason).toContain(
      "NVML not available: /nonexistent/libnvidia-ml.so.1: cannot open shared object file",
    );
    expect(doc.cudaDriverVersion).toBe("12.2");
    expect(doc.driverVersion).toBe("535.104.05");
    expect(doc.gpus.map((g: { name: string }) => g.name)).toEqual(["NVIDIA A100-SXM4-40GB", "Tesla T4"]);
    expect(doc.gpus[0].processes).toEqual([
      { pid: 4242, usedMemoryMiB: 900 },
      { pid: 77, usedMemoryMiB: null },
    ]);
    expect(doc.gpus[1].processes).toEqual([]);
    expect(doc.gpus[1].power.drawW).toBeNull();
  });

  it("retries without compute_cap on an old nvidia-smi", async () => {
    const bin = fakeSmiDir();
    const r = await runNode([telemetryCli, "telemetry", "--json", "--nvidia-smi"], {
      PATH: `${bin}:${process.env["PATH"] ?? ""}`,
      FAKE_SMI_OLD: "1",
    });
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.source).toBe("nvidia-smi");
    expect(doc.gpus).toHaveLength(2);
    expect(doc.gpus[0].computeCapability).toBeNull();
    expect(doc.gpus[0].memory.totalMiB).toBe(40960);
  });

  it("asks nvidia-smi only for fields it knows, in the order the parser reads them", async () => {
    const bin = fakeSmiDir();
    const log = join(tmp, "fake-smi-calls.log");
    writeFileSync(log, "");
    const r = await runNode([telemetryCli, "telemetry", "--json", "--nvidia-smi"], {
      PATH: `${bin}:${process.env["PATH"] ?? ""}`,
      FAKE_SMI_LOG: log,
    });
    expect(r.code, r.stderr).toBe(0);
    const query = readFileSync(log, "utf8")
      .split("\n")
      .find((l) => l.startsWith("--query-gpu="))!;
    expect(query.split(" ")[0]!.slice("--query-gpu=".length).split(",")).toEqual([...SMI_GPU_FIELDS]);
    // Values served by name come back under the right keys (a parser reading columns in another
    // order than it asked would put the T4's clocks in its memory).
    const t4 = (JSON.parse(r.stdout) as { gpus: { name: string; memory: { totalMiB: number } }[] }).gpus[1]!;
    expect(t4).toMatchObject({ name: "Tesla T4", memory: { totalMiB: 15360 } });
  });
});
