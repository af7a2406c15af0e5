// Shared by acceptance.test.ts and bundle.test.ts: two fake GPUs, a fake `nvidia-smi` that agrees
// with them, and a runner for an acceptance script that reads back its JSON report.
import { execFile } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type FakeDevice, fakeDevice } from "../fake-nvml/config.js";
import { configFile, fake, root } from "../support/gpu.js";

export const devices: FakeDevice[] = [
  fakeDevice(0),
  fakeDevice(1, {
    name: "NVIDIA H200",
    memTotalMiB: 143771,
    processes: [
      { pid: 4242, usedMiB: 900 },
      { pid: 77, usedMiB: null },
    ],
  }),
];

/** nvidia-smi's view of a fake device, by query field name. */
export function smiValues(d: FakeDevice, i: number): Record<string, string | number> {
  const total = d.memTotalMiB ?? 0;
  const used = d.memUsedMiB ?? 0;
  return {
    index: i,
    uuid: d.uuid ?? "",
    name: d.name ?? "",
    "pci.bus_id": d.pci ?? "",
    driver_version: "550.54.14",
    "memory.total": total,
    "memory.used": used,
    "memory.free": total - used - (d.memReservedMiB ?? 0),
    "temperature.gpu": d.temp ?? 0,
    "power.draw": ((d.powerMw ?? 0) / 1000).toFixed(2),
    "clocks.sm": d.smClock ?? 0,
    "clocks.mem": d.memClock ?? 0,
  };
}

/** A bash nvidia-smi: prints the requested columns per GPU ([N/A] for the rest), no forks. */
export function writeFakeSmi(dir: string, rows: Record<string, string | number>[]): void {
  mkdirSync(dir, { recursive: true });
  const entries = rows.flatMap((r, i) => Object.entries(r).map(([k, v]) => `  ["${i}:${k}"]="${v}"`));
  const script = `#!/usr/bin/env bash
declare -A V=(
${entries.join("\n")}
)
q=""
for a in "$@"; do case "$a" in --query-gpu=*) q="\${a#--query-gpu=}" ;; esac; done
if [ -z "$q" ]; then
  echo "| NVIDIA-SMI 550.54.14    Driver Version: 550.54.14    CUDA Version: 12.4 |"
  exit 0
fi
IFS=, read -r -a fields <<<"$q"
for g in ${rows.map((_, i) => i).join(" ")}; do
  line=""
  for f in "\${fields[@]}"; do
    v="\${V[$g:$f]-[N/A]}"
    line="\${line:+$line, }$v"
  done
  echo "$line"
done
`;
  writeFileSync(join(dir, "nvidia-smi"), script);
  chmodSync(join(dir, "nvidia-smi"), 0o755);
}

export interface Check {
  name: string;
  ok: boolean;
  mandatory: boolean;
  details: string;
  expected: unknown;
  actual: unknown;
}
export interface Report {
  ok: boolean;
  failed: string[];
  host: Record<string, unknown>;
  checks: Check[];
}

/** Run `bash script reportDir` with the fake NVML and `smiDir` first on PATH. */
export function runAcceptance(
  script: string,
  smiDir: string,
  reportDir: string,
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; report: Report; output: string }> {
  const cfg = configFile({ devices });
  return new Promise((resolve) => {
    execFile(
      "bash",
      [script, reportDir],
      {
        cwd: root,
        timeout: 50_000,
        env: {
          ...process.env,
          PATH: `${smiDir}:${process.env["PATH"]}`,
          AITBC_NVML_LIBRARY: fake.current,
          FAKE_NVML_CONFIG: cfg,
          AITBC_ACCEPT_N: "200",
          AITBC_ACCEPT_N_SPAWN: "3",
          ...env,
        },
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : null) : 0;
        const report = JSON.parse(readFileSync(join(reportDir, "gpu-acceptance.json"), "utf8")) as Report;
        resolve({ code, report, output: `${stdout}${stderr}` });
      },
    );
  });
}
