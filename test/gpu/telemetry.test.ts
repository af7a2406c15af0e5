// `telemetry` as a real process on the fake NVML: JSON against its documented schema,
// Prometheus text parsed back, the CPU-only message, and --watch stopping on SIGINT.
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { GPU_METRICS } from "../../src/gpu/gpu-metrics.js";
import { createGpuInfoSource } from "../../src/gpu/index.js";
import { telemetryJsonSchema } from "../../src/gpu/telemetry-schema.js";
import { silentLogger } from "../../src/log.js";
import { OpsMetrics } from "../../src/ops/metrics.js";
import { fakeDevice } from "../fake-nvml/config.js";
import { addonPath, configFile, fake, root, runNode, telemetryCli, tmp } from "../support/gpu.js";

const Doc = telemetryJsonSchema;
// The keys of a GPU docs/telemetry.md lists, in its order: the schema in src must say the same.
const DOCUMENTED_GPU_KEYS = [
  "index",
  "uuid",
  "name",
  "pciBusId",
  "error",
  "memory",
  "utilization",
  "temperatureC",
  "power",
  "totalEnergyMj",
  "clocks",
  "fanPct",
  "pstate",
  "clockEventReasons",
  "ecc",
  "pcie",
  "computeCapability",
  "processes",
  "health",
];

const emptyPath = join(tmp, "empty-bin");
mkdirSync(emptyPath, { recursive: true });
const WEIRD = 'Weird "GPU" \\ model';

function twoGpus(): string {
  return configFile({
    devices: [
      fakeDevice(0, { processes: [{ pid: 4242, usedMiB: 2048 }], clockReasons: 0x4 | 0x40 }),
      fakeDevice(1, { name: WEIRD, unsupported: ["fan", "power", "energy"] }),
    ],
  });
}

const run = (args: string[], cfg: string) =>
  runNode([telemetryCli, "telemetry", ...args], {
    FAKE_NVML_CONFIG: cfg,
    AITBC_NVML_ADDON: addonPath,
    PATH: emptyPath,
  });

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A small parser for the Prometheus text format: HELP/TYPE lines and samples with escaped labels. */
function parseProm(text: string): { types: Map<string, string>; samples: Sample[] } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (meta) {
      if (meta[1] === "TYPE") types.set(meta[2]!, meta[3]!);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`bad exposition line: ${line}`);
    const labels: Record<string, string> = {};
    const body = m[2]?.slice(1, -1) ?? "";
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;
    let pos = 0;
    while (pos < body.length) {
      re.lastIndex = pos;
      const l = re.exec(body);
      if (!l) throw new Error(`bad labels: ${body}`);
      labels[l[1]!] = l[2]!.replace(/\\(["\\n])/g, (_, c: string) => (c === "n" ? "\n" : c));
      pos = re.lastIndex;
    }
    if (!types.has(m[1]!)) throw new Error(`sample before its TYPE: ${m[1]}`);
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return { types, samples };
}

describe("telemetry command", () => {
  it("--json follows the documented schema, unsupported fields null", async () => {
    const r = await run(["--json", "--nvml-library", fake.current], twoGpus());
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const doc = Doc.parse(JSON.parse(r.stdout));
    expect(doc.source).toBe("nvml");
    expect(doc.gpus).toHaveLength(2);
    expect(new Set(Object.keys(doc.gpus[0]!))).toEqual(new Set(DOCUMENTED_GPU_KEYS));
    expect(doc.gpus[0]!.fanPct).toBe(30);
    const [a, b] = doc.gpus;
    expect(a!.clockEventReasons).toEqual(["sw_power_cap", "hw_thermal_slowdown"]);
    expect(a!.processes).toEqual([{ pid: 4242, usedMemoryMiB: 2048 }]);
    expect(a!.pstate).toBe("P0");
    expect(b!.name).toBe(WEIRD);
    expect(b!.fanPct).toBeNull();
    expect(b!.power.drawW).toBeNull();
    expect(b!.totalEnergyMj).toBeNull();
    expect(b!.power.limitW).toBe(700);
  });

  it("--prometheus parses back with DCGM names, labels escaped", async () => {
    const r = await run(["--prometheus", "--nvml-library", fake.current], twoGpus());
    expect(r.code).toBe(0);
    const { types, samples } = parseProm(r.stdout);
    expect(types.get("DCGM_FI_DEV_GPU_UTIL")).toBe("gauge");
    expect(types.get("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION")).toBe("counter");
    const get = (name: string, gpu: string) =>
      samples.find((s) => s.name === name && s.labels["gpu"] === gpu)?.value;
    expect(get("DCGM_FI_DEV_FB_USED", "0")).toBe(1024);
    expect(get("DCGM_FI_DEV_FB_FREE", "0")).toBe(81559 - 1024 - 512);
    expect(get("DCGM_FI_DEV_GPU_TEMP", "1")).toBe(41);
    expect(get("DCGM_FI_DEV_POWER_USAGE", "0")).toBe(120);
    expect(get("DCGM_FI_DEV_SM_CLOCK", "0")).toBe(1980);
    expect(get("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "0")).toBe(123_456_789);
    // Unsupported on GPU 1: no sample rather than a made-up value.
    expect(get("DCGM_FI_DEV_POWER_USAGE", "1")).toBeUndefined();
    expect(get("DCGM_FI_DEV_FAN_SPEED", "1")).toBeUndefined();
    expect(get("DCGM_FI_DEV_FAN_SPEED", "0")).toBe(30);
    expect(get("aitbc_gpu_count", "0")).toBeUndefined();
    expect(samples.find((s) => s.name === "aitbc_gpu_count")?.value).toBe(2);
    expect(
      samples
        .filter((s) => s.name === "aitbc_gpu_clock_event_reason" && s.labels["gpu"] === "0")
        .map((s) => s.labels["reason"]),
    ).toEqual(["sw_power_cap", "hw_thermal_slowdown"]);
    const weird = samples.find((s) => s.name === "DCGM_FI_DEV_GPU_TEMP" && s.labels["gpu"] === "1");
    expect(weird?.labels["modelName"]).toBe(WEIRD);
    expect(weird?.labels["UUID"]).toBe(fakeDevice(1).uuid);
    expect(
      samples.find((s) => s.name === "aitbc_gpu_process_used_memory_mib" && s.labels["pid"] === "4242")
        ?.value,
    ).toBe(2048);
  });

  it("says there is no GPU and why on a CPU-only host (exit 0)", async () => {
    const cfg = twoGpus();
    const table = await run(["--nvml-library", "/nonexistent/libnvidia-ml.so.1"], cfg);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain("no GPU");
    expect(table.stdout).toContain("cannot open shared object file");
    expect(table.stdout).toContain("nvidia-smi not found");
    const json = await run(["--json", "--nvml-library", "/nonexistent/libnvidia-ml.so.1"], cfg);
    const doc = Doc.parse(JSON.parse(json.stdout));
    expect(doc.source).toBe("none");
    expect(doc.gpus).toEqual([]);
  });

  it("prints a gpustat-like table: a line per GPU, then its processes", async () => {
    const r = await run(["--nvml-library", fake.current], twoGpus());
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines[1]).toMatch(
      /^\[0\] NVIDIA H100 80GB HBM3\s+\|\s+40°C,\s+10 % \|\s+1024 \/\s+81559 MiB \|\s+120 \/\s+700 W$/,
    );
    expect(lines[2]).toBe("    pid 4242: 2048 MiB");
    expect(lines[3]).toContain("[1] Weird");
    expect(lines[3]).toContain("n/a /  700 W");
  });

  it("--watch redraws until SIGINT, then exits 0", async () => {
    const child = spawn(
      process.execPath,
      [telemetryCli, "telemetry", "--watch", "0.2", "--nvml-library", fake.current],
      { cwd: root, env: { ...process.env, FAKE_NVML_CONFIG: twoGpus(), AITBC_NVML_ADDON: addonPath } },
    );
    let out = "";
    const frames = new Promise<void>((resolve) => {
      child.stdout.on("data", (b: Buffer) => {
        out += b.toString();
        if (out.split("\x1b[2J").length > 3) resolve();
      });
    });
    await frames;
    const code = new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
    child.kill("SIGINT");
    expect(await code).toBe(0);
    expect(out.startsWith("\x1b[H\x1b[2J")).toBe(true);
    expect(out).toContain("[1] Weird");
  });
});

describe("the miner's /metrics", () => {
  it("types and values every GPU metric as `telemetry --prometheus` does", async () => {
    const cfg = twoGpus();
    const cli = parseProm((await run(["--prometheus", "--nvml-library", fake.current], cfg)).stdout);
    process.env["FAKE_NVML_CONFIG"] = cfg;
    const src = await createGpuInfoSource({
      nvmlLibrary: fake.current,
      log: silentLogger(),
      nvidiaSmi: "/nonexistent/nvidia-smi",
    });
    const ops = new OpsMetrics();
    try {
      ops.setSnapshot(await src.snapshot());
    } finally {
      await src.close();
    }
    const served = parseProm(await ops.registry.metrics());
    const counters = GPU_METRICS.filter((m) => m.type === "counter").map((m) => m.name);
    expect(counters).toContain("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION");
    const names = [...GPU_METRICS.map((m) => m.name), "aitbc_gpu_clock_event_reason", "aitbc_gpu_unreadable"];
    for (const name of names) {
      const fromCli = cli.samples.filter((x) => x.name === name);
      const fromServer = served.samples.filter((x) => x.name === name);
      expect(fromServer, name).toEqual(fromCli);
      expect(served.types.get(name), name).toBe(cli.types.get(name));
    }
    expect(cli.samples.filter((x) => x.name === "aitbc_gpu_clock_event_reason").length).toBeGreaterThan(0);
  });
});
