// scripts/device-bundle.sh: the bundle fits the 48 MiB carry budget, its own Node runs the CLI
// without node-llama-cpp (--version, telemetry --json on the fake NVML), and its
// run-acceptance.sh passes against the fake NVML + fake nvidia-smi, recording demo/bench as skipped.
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { configFile, fake, root, tmp } from "../support/gpu.js";
import { devices, runAcceptance, smiValues, writeFakeSmi } from "./acceptance-fixtures.js";

const out = join(tmp, "bundle");
const pkg = join(out, "pkg");
const node = join(tmp, "bundle-node", "node");
// The bundle must use its own addon (prebuilds/), not the one the helpers point tests at.
const { AITBC_NVML_ADDON: _, ...baseEnv } = process.env;

function run(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { cwd: pkg, env: { ...baseEnv, ...env }, timeout: 30_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === "number" ? err.code : null) : 0, stdout, stderr });
      },
    );
  });
}

describe("scripts/device-bundle.sh", () => {
  beforeAll(() => {
    // gzip: xz -9 of the Node binary takes a minute on a small machine (the default is xz).
    execFileSync("bash", [join(root, "scripts", "device-bundle.sh"), out], {
      cwd: root,
      env: { ...process.env, AITBC_BUNDLE_COMPRESS: "gzip" },
      stdio: "pipe",
      timeout: 90_000,
    });
    mkdirSync(join(tmp, "bundle-node"), { recursive: true });
    execFileSync("bash", ["-c", `gzip -dc "${out}/node.gz" > "${node}" && chmod +x "${node}"`]);
  }, 100_000);

  it("is under 48 MiB and has no inference runtime", () => {
    const bytes = Number(execFileSync("du", ["-sb", out], { encoding: "utf8" }).split("\t")[0]);
    expect(bytes).toBeLessThan(48 * 1024 * 1024);
    expect(existsSync(join(pkg, "node_modules", "@node-llama-cpp"))).toBe(false);
    // The CLI loads node-llama-cpp lazily, so the bundle needs no stub of it (device-bundle.sh
    // writes one only when the packed CLI cannot start without it).
    expect(existsSync(join(pkg, "node_modules", "node-llama-cpp"))).toBe(false);
    const meta = JSON.parse(readFileSync(join(pkg, "BUNDLE.json"), "utf8"));
    expect(meta).toMatchObject({ inferenceRuntime: false, node: process.version, nodeLlamaCppStub: null });
  });

  it("runs --version and telemetry --json with its own node on the fake NVML", async () => {
    const version = await run(node, ["bin/aitbc-native-miner.js", "--version"], {});
    expect(version.stderr).toBe("");
    expect(version.stdout.trim()).toBe(JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version);
    const cfg = configFile({ devices });
    const tel = await run(node, ["bin/aitbc-native-miner.js", "telemetry", "--json"], {
      AITBC_NVML_LIBRARY: fake.current,
      FAKE_NVML_CONFIG: cfg,
    });
    expect(tel.code).toBe(0);
    const doc = JSON.parse(tel.stdout);
    expect(doc.source).toBe("nvml");
    expect(doc.reason).toContain(join(pkg, "prebuilds"));
    expect(doc.gpus.map((g: { name: string }) => g.name)).toEqual(["NVIDIA H100 80GB HBM3", "NVIDIA H200"]);
  });

  it("run-acceptance.sh passes on the fake NVML and records demo/bench as skipped", async () => {
    writeFakeSmi(join(tmp, "smi-bundle"), devices.map(smiValues));
    const { code, report, output } = await runAcceptance(
      join(out, "run-acceptance.sh"),
      join(tmp, "smi-bundle"),
      join(tmp, "report-bundle"),
      { AITBC_NVML_ADDON: "" },
    );
    expect(output).toContain(`node ${process.version} from the bundle`);
    expect(report.checks.filter((c) => c.mandatory && !c.ok)).toEqual([]);
    expect(code).toBe(0);
    for (const n of ["demo (CUDA)", "bench (CUDA)"])
      expect(report.checks.find((c) => c.name === n)?.details).toBe(
        "skipped: inference runtime not in bundle",
      );
  });
});
