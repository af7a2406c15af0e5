// Shared test plumbing: where the fake NVML and the freshly built addon are, and a fake config
// file per test.
import { execFile } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type FakeNvmlConfig, writeFakeNvmlConfig } from "../fake-nvml/config.js";
import { fakeNvmlPaths } from "../setup/fake-nvml.js";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const fake = fakeNvmlPaths(root);
/** The addon global setup just built (not a possibly older prebuild). */
export const addonPath = join(root, "build", "Release", "aitbc_nvml.node");
process.env["AITBC_NVML_ADDON"] = addonPath;

const dir = mkdtempSync(join(tmpdir(), "aitbc-gpu-test-"));
let n = 0;

/** Write a fake NVML config and point FAKE_NVML_CONFIG at it (read by the fake at nvmlInit). */
export function useFakeConfig(cfg: FakeNvmlConfig): string {
  const file = writeFakeNvmlConfig(join(dir, `nvml-${n++}.conf`), cfg);
  process.env["FAKE_NVML_CONFIG"] = file;
  return file;
}

export function configFile(cfg: FakeNvmlConfig): string {
  return writeFakeNvmlConfig(join(dir, `nvml-${n++}.conf`), cfg);
}

export const tmp = dir;

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runNode(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      { cwd: root, env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : null) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

export const telemetryCli = join(root, "test", "gpu", "fixtures", "telemetry-cli.mjs");
