// nvidia-smi fallback: the CSV parser on fixture text, and the real execFile path with a fake
// `nvidia-smi` first on PATH.
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseSmiAppsCsv, parseSmiGpuCsv, readExtra, SMI_GPU_FIELDS } from "../../src/gpu/index.js";
import { SmiParseError } from "../../src/gpu/smi.js";
import { runNode, telemetryCli, tmp } from "../support/gpu.js";

const GPU_CSV = [
  "0, GPU-aaaa-1111, NVIDIA A100-SXM4-40GB, 00000000:07:00.0, 535.104.05, 40960, 1000, 39500, 35, 10, 45, 80.50, 400.00, 400.00, 1410, 1215, 1410, 1215, [N/A], P0, 4, 16, 4, 16, Enabled, Enabled, 0, 8.0",
  "1, GPU-bbbb-2222, Tesla T4, 00000000:08:00.0, 535.104.05, 15360, 200, 14900, 0, 0, 30, [N/A], [Not Supported], [Not Supported], 300, 405, 1590, 5001, 0, P8, 1, 16, 3, 16, Disabled, Disabled, [N/A], 7.5",
].join("\n");
const APPS_CSV = "GPU-aaaa-1111, 4242, 900\nGPU-aaaa-1111, 77, [N/A]\n";

describe("nvidia-smi CSV parser", () => {
  it("maps columns and turns [N/A] / [Not Supported] into null", () => {
    const rows = parseSmiGpuCsv(`${GPU_CSV}\n`);
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
    expect(readExtra(a!)).toMatchObject({
      fanSpeedPct: null,
      pstate: 0,
      eccModeCurrent: true,
      pcieLinkGen: 4,
    });
    expect(t4!.powerDrawW).toBeNull();
    expect(t4!.powerLimitW).toBeNull();
    expect(readExtra(t4!)).toMatchObject({
      powerEnforcedLimitW: null,
      eccUncorrectedVolatile: null,
      eccModeCurrent: false,
      pstate: 8,
      fanSpeedPct: 0,
    });
  });

  it("rejects rows with the wrong number of columns", () => {
    expect(() => parseSmiGpuCsv("0, GPU-x, name")).toThrow(SmiParseError);
  });

  it("parses compute apps per GPU UUID", () => {
    const apps = parseSmiAppsCsv(APPS_CSV);
    expect(apps.get("GPU-aaaa-1111")).toEqual([
      { pid: 4242, usedMemoryMiB: 900 },
      { pid: 77, usedMemoryMiB: null },
    ]);
  });
});

function fakeSmiDir(): string {
  const dir = join(tmp, "fake-smi-bin");
  mkdirSync(dir, { recursive: true });
  const script = join(dir, "nvidia-smi");
  writeFileSync(
    script,
    [
      "#!/bin/sh",
      'case "$1" in',
      "  --query-gpu=*)",
      '    case "$1" in *compute_cap*) if [ -n "$FAKE_SMI_OLD" ]; then echo \'Field "compute_cap" is not a valid field to query.\' >&2; exit 2; fi;; esac',
      '    if [ -n "$FAKE_SMI_OLD" ]; then',
      `      printf '%s\\n' '${GPU_CSV.split("\n")
        .map((l) => l.replace(/, [0-9.]+$/, ""))
        .join("' '")}'`,
      "    else",
      `      printf '%s\\n' '${GPU_CSV.split("\n").join("' '")}'`,
      "    fi;;",
      `  --query-compute-apps=*) printf '%s' '${APPS_CSV}';;`,
      '  "") echo "| NVIDIA-SMI 535.104.05   Driver Version: 535.104.05   CUDA Version: 12.2 |";;',
      "  *) exit 9;;",
      "esac",
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

  it("keeps the field list in one place", () => {
    expect(GPU_CSV.split("\n")[0]!.split(",")).toHaveLength(SMI_GPU_FIELDS.length);
  });
});
