// scripts/gpu-acceptance.sh against the fake NVML (2 GPUs) and a fake `nvidia-smi` first on
// PATH that answers any --query-gpu with values consistent with the fake's config: the report
// must compare every field and pass; when nvidia-smi disagrees on memory.total it must fail.
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { root, tmp } from "../support/gpu.js";
import {
  type Check,
  devices,
  type Report,
  runAcceptance,
  smiValues,
  writeFakeSmi,
} from "./acceptance-fixtures.js";

const script = join(root, "scripts", "gpu-acceptance.sh");
// node-llama-cpp is installed in the dev tree: demo/bench on CPU are not what this tests.
const env = { AITBC_ACCEPT_SKIP_INFERENCE: "1" };

const FIELDS = [
  "uuid",
  "name",
  "pci bus id",
  "memory.total",
  "memory.used",
  "memory.free",
  "temperature",
  "power.draw",
  "clocks.sm",
  "clocks.mem",
];

describe("scripts/gpu-acceptance.sh on the fake NVML", () => {
  let good: { code: number | null; report: Report };
  let bad: { code: number | null; report: Report };

  beforeAll(async () => {
    const rows = devices.map(smiValues);
    writeFakeSmi(join(tmp, "smi-good"), rows);
    const wrong = rows.map((r, i) => (i === 1 ? { ...r, "memory.total": 143000 } : r));
    writeFakeSmi(join(tmp, "smi-bad"), wrong);
    // One after the other: both spawn the CLI several times on a small machine.
    good = await runAcceptance(script, join(tmp, "smi-good"), join(tmp, "report-good"), env);
    bad = await runAcceptance(script, join(tmp, "smi-bad"), join(tmp, "report-bad"), env);
  }, 110_000);

  it("passes when nvidia-smi agrees, comparing every field of every GPU", () => {
    const { code, report } = good;
    const names = report.checks.map((c) => c.name);
    expect(report.failed.filter((n) => report.checks.find((c) => c.name === n)?.mandatory)).toEqual([]);
    expect(report.ok).toBe(true);
    expect(code).toBe(0);
    for (const g of [0, 1]) for (const f of FIELDS) expect(names).toContain(`gpu${g} ${f}`);
    for (const n of [
      "driver version",
      "gpu count",
      "telemetry source is the NVML addon",
      "timing: addon snapshot faster than spawning nvidia-smi",
      "vram gpu0 free memory",
      "vram gpu1 process list",
      "doctor node",
      "doctor addon",
      "doctor gpu",
    ])
      expect(names).toContain(n);
    const procs = report.checks.find((c) => c.name === "vram gpu1 process list") as Check & {
      actual: unknown;
    };
    expect(procs.actual).toEqual([
      { pid: 4242, usedMemoryMiB: 900 },
      { pid: 77, usedMemoryMiB: null },
    ]);
    expect(report.host).toMatchObject({
      gpus: ["NVIDIA H100 80GB HBM3", "NVIDIA H200"],
      driverVersion: "550.54.14",
      cudaVersion: "12.4",
      node: process.version,
    });
    expect(report.checks.find((c) => c.name === "demo (CUDA)")?.details).toMatch(
      /^skipped: AITBC_ACCEPT_SKIP_INFERENCE/,
    );
  });

  it("fails, exit 1, when nvidia-smi disagrees on memory.total", () => {
    const { code, report } = bad;
    expect(code).toBe(1);
    expect(report.ok).toBe(false);
    const mandatoryFailed = report.checks.filter((c) => c.mandatory && !c.ok).map((c) => c.name);
    expect(mandatoryFailed).toEqual(["gpu1 memory.total"]);
    expect(report.checks.find((c) => c.name === "gpu1 memory.total")).toMatchObject({
      expected: 143000,
      actual: 143771,
    });
  });
});
