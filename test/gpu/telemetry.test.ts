// `telemetry` as a real process on the fake NVML: JSON against its documented schema,
// Prometheus text parsed back, the CPU-only message, and --watch stopping on SIGINT.
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { createGpuInfoSource } from "../../src/gpu/index.js";
import { GPU_METRICS } from "../../src/gpu/telemetry-format.js";
import { silentLogger } from "../../src/log.js";
import { OpsMetrics } from "../../src/ops/metrics.js";
import { fakeDevice } from "../fake-nvml/config.js";
import { addonPath, configFile, fake, root, runNode, telemetryCli, tmp } from "../support/gpu.js";

const n = z.number().nullable();
// The schema of docs/telemetry.md ("aitbc-telemetry/2"); strict, so undocumented keys fail.
const Gpu = z.strictObject({
  index: z.number().int(),
  uuid: z.string(),
  name: z.string(),
  pciBusId: z.string().nullable(),
  error: z.strictObject({ code: n, message: z.string() }).nullable(),
  memory: z.strictObject({ totalMiB: n, usedMiB: n, freeMiB: n, reservedMiB: n }),
  utilization: z.strictObject({ gpuPct: n, memoryPct: n }),
  temperatureC: n,
  power: z.strictObject({ drawW: n, limitW: n, enforcedLimitW: n }),
  totalEnergyMj: n,
  clocks: z.strictObject({ smMHz: n, memMHz: n, smMaxMHz: n, memMaxMHz: n }),
  fanPct: n,
  pstate: z
    .string()
    .regex(/^P\d+$/)
    .nullable(),
  clockEventReasons: z.array(z.string()).nullable(),
  ecc: z.strictObject({
    enabled: z.boolean().nullable(),
    pendingEnabled: z.boolean().nullable(),
    uncorrectedVolatile: n,
    retiredPagesPending: z.boolean().nullable(),
    remappedRows: z.strictObject({
      correctable: n,
      uncorrectable: n,
      pending: z.boolean().nullable(),
      failure: z.boolean().nullable(),
    }),
  }),
  pcie: z.strictObject({ gen: n, width: n, genMax: n, widthMax: n, txKBs: n, rxKBs: n }),
  computeCapability: z.string().nullable(),
  processes: z.array(z.strictObject({ pid: z.number().int(), usedMemoryMiB: n })).nullable(),
  // docs/gpu-health.md
  health: z
    .strictObject({
      index: z.number().int(),
      uuid: z.string(),
      state: z.enum(["healthy", "sick", "lost"]),
      drained: z.boolean(),
      takesJobs: z.boolean(),
      reasons: z.array(
        z.strictObject({
          code: z.string(),
          severity: z.enum(["warning", "sick", "lost"]),
          message: z.string(),
          since: z.iso.datetime().nullable(),
        }),
      ),
    })
    .nullable(),
});
const Doc = z.strictObject({
  schema: z.literal("aitbc-telemetry/2"),
  takenAt: z.iso.datetime(),
  source: z.enum(["nvml", "nvidia-smi", "none"]),
  reason: z.string().nullable(),
  driverVersion: z.string().nullable(),
  nvmlVersion: z.string().nullable(),
  cudaDriverVersion: z.string().nullable(),
  gpus: z.array(Gpu),
});

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
    for (const m of GPU_METRICS) {
      const fromCli = cli.samples.filter((x) => x.name === m.name);
      const fromServer = served.samples.filter((x) => x.name === m.name);
      expect(fromServer, m.name).toEqual(fromCli);
      if (fromCli.length > 0) expect(served.types.get(m.name), m.name).toBe(cli.types.get(m.name));
    }
  });
});
