// The inference acceptance (scripts/gpu-inference-acceptance.sh + .mjs, bench/inference-report.mjs)
// held to its contract without a GPU, a compiler or a model: the report has the schema and every
// measured field, with the targets beside the figures and where the time goes for those missed; a
// device bundle of the shape device-bundle.sh --inference writes is unpacked where `gpu build` and
// getLlama look; a step that fails, and a worker that hangs past the limit, still leave a report.
// No verdict here rests on the wall clock.
import { execFile, execFileSync, spawn } from "node:child_process";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
// @ts-expect-error: plain ESM without types
import { buildReport, runPlan, SCHEMA, TARGETS } from "../../bench/inference-report.mjs";

// biome-ignore lint/suspicious/noExplicitAny: a JSON report read back, checked field by field
type Json = Record<string, any>;

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const tmp = mkdtempSync(join(tmpdir(), "aitbc-inference-accept-"));
const script = join(root, "scripts", "gpu-inference-acceptance.sh");

// ---- the report, from a fake run -----------------------------------------------------------
const level = (c: number, raw: number, miner: number) => ({
  inFlight: c,
  jobs: Math.max(4, 2 * c),
  raw: { tokens: 512 * c, seconds: 3, tokPerS: raw, meanJobMs: 900 },
  ...Object.fromEntries(
    ["claim", "aitbc"].map((p) => [
      p,
      {
        jobs: Math.max(4, 2 * c),
        completed: Math.max(4, 2 * c),
        receiptsValid: Math.max(4, 2 * c),
        tokPerS: miner,
        meanJobMs: 950,
        meanInferenceMs: 900,
        meanOverheadMs: 50,
        meanPickupGapMs: 4,
        loadedAfterMs: 9000,
        modelLoadedMs: 3000,
      },
    ]),
  ),
  vram: { estimateMiB: 5500, minerMiB: 6000 + 500 * c },
});

function fakeRun(over: Record<string, unknown> = {}) {
  const plan = runPlan("gpu", {});
  return {
    plan,
    startedAt: Date.parse("2026-12-02T00:00:00Z"),
    endedAt: Date.parse("2026-12-02T00:08:00Z"),
    limitS: 510,
    complete: true,
    host: { gpus: [{ name: "NVIDIA H200" }], cpuCount: 16 },
    steps: [
      { name: "unpack node", ok: true, ms: 3000 },
      { name: "build", ok: true, ms: 240_000 },
    ],
    build: { ok: true, seconds: 240, flashAttention: false, sass: [90] },
    models: [{ shape: "llama-3.1-8b", type: "q4_0", bytes: 4.5e9 }],
    demo: { jobs: 8, completed: 8, receiptsValid: 8, gpuLayers: 5, totalLayers: 5, allLayersOffloaded: true },
    truth: { agrees: true },
    single: {
      "llama-3.2-1b-q4_0": {
        decodeTokPerS: 420,
        promptTokPerS: 20_000,
        loadModelMs: 900,
        gpuLayers: 17,
        totalLayers: 17,
      },
      "llama-3.1-8b-q4_0": {
        gpu: "cuda",
        fileBytes: 4.5e9,
        decodeTokPerS: 140, // below the 150 target
        promptTokPerS: 9000,
        loadModelMs: 4200,
        loadLlamaMs: 600,
        gpuLayers: 33,
        totalLayers: 33,
        vram: {
          estimateMiB: 5660,
          measuredMiB: 5600,
          cudaContextMiB: 500,
          weightsMiB: 4600,
          contextMiB: 500,
        },
      },
    },
    coldLoad: { model: "llama-3.1-8b-q4_0", readMBps: 9000, loadModelMs: 4200 },
    aggregate: {
      levels: [level(1, 150, 147), level(16, 1200, 1100), level(4, 500, 490), level(64, 3000, 2950)],
    },
    ...over,
  };
}

describe("the report (bench/inference-report.mjs)", () => {
  it("has the schema, every measured figure and the targets beside them", () => {
    const r = buildReport(fakeRun());
    expect(r.schema).toBe(SCHEMA);
    expect(r).toMatchObject({ mode: "gpu", complete: true, runOk: true, failure: null, durationMs: 480_000 });
    for (const k of [
      "host",
      "build",
      "models",
      "demo",
      "truth",
      "single",
      "coldLoad",
      "vram",
      "aggregate",
      "steps",
    ])
      expect(r[k], k).toBeTruthy();
    expect(Object.keys(r.single)).toEqual(["llama-3.2-1b-q4_0", "llama-3.1-8b-q4_0"]);
    expect(r.aggregate.rows.map((x: { inFlight: number }) => x.inFlight)).toEqual([1, 16, 4, 64]);
    expect(r.aggregate.rows[1]).toMatchObject({
      inFlight: 16,
      rawTokPerS: 1200,
      claimTokPerS: 1100,
      aitbcTokPerS: 1100,
      aitbcPassThrough: 0.917,
      aitbcCompleted: "32/32",
      aitbcReceiptsValid: "32/32",
    });
    const t = Object.fromEntries(r.targets.map((x: { name: string }) => [x.name, x]));
    expect(Object.keys(t)).toEqual(Object.keys(TARGETS));
    expect(t.passThrough).toMatchObject({ value: 0.917, met: false, target: TARGETS.passThrough.text });
    expect(t.decode8b).toMatchObject({ value: 140, met: false, unit: "tok/s" });
    expect(t.aggregate16).toMatchObject({ met: true, unit: "x" });
    expect(t.aggregate16.value).toBeCloseTo(1100 / 147, 3);
    expect(t.coldLoad8b).toMatchObject({ value: 4200, met: true });
    expect(t.vramEstimate).toMatchObject({ met: true, estimateMiB: 5660, measuredMiB: 5600 });
  });

  it("says where the time goes for each missed target, and only for those", () => {
    const r = buildReport(fakeRun());
    expect(Object.keys(r.whereTheTimeGoes).sort()).toEqual(["decode8b", "passThrough"]);
    expect(r.whereTheTimeGoes.decode8b).toMatchObject({ runtime: "cuda", gpuLayers: 33, msPerToken: 7.14 });
    expect(r.whereTheTimeGoes.passThrough[0]).toMatchObject({
      inFlight: 1,
      rawJobMs: 900,
      aitbc: { meanJobMs: 950, meanInferenceMs: 900, meanMinerOverheadMs: 50, meanPickupGapMs: 4 },
    });
  });

  it("a missing figure is null, never a pass; a failed or skipped step makes runOk false", () => {
    const r = buildReport(
      fakeRun({
        single: {},
        aggregate: { levels: [] },
        steps: [
          { name: "build", ok: true },
          { name: "aggregate", ok: false, skipped: "out of time" },
        ],
      }),
    );
    expect(r.targets.every((x: { value: unknown; met: unknown }) => x.value === null && x.met === null)).toBe(
      true,
    );
    expect(r.whereTheTimeGoes).toEqual({});
    expect(r.runOk).toBe(false);
    expect(buildReport(fakeRun({ complete: false })).runOk).toBe(false);
  });

  it("plans the GPU run for sm_90 without flash-attention kernels, and a small CPU rehearsal", () => {
    const gpu = runPlan("gpu", {});
    expect(gpu.build).toEqual(["gpu", "build", "--arch", "90", "--no-flash-attention"]);
    expect(gpu).toMatchObject({
      shapes: ["llama-3.2-1b", "llama-3.1-8b"],
      throughputShape: "llama-3.1-8b",
      type: "q4_0",
    });
    expect([...gpu.levels].sort((a: number, b: number) => a - b)).toEqual([1, 4, 16, 64]);
    expect(runPlan("gpu", { AITBC_ACCEPT_FA: "1" }).build).toEqual(["gpu", "build", "--arch", "90"]);
    const cpu = runPlan("cpu", {});
    expect(cpu).toMatchObject({
      build: ["gpu", "build", "--cpu"],
      shapes: ["llama-3.2-1b"],
      levels: [1, 4],
      gpu: false,
    });
    expect(buildReport({ ...fakeRun(), plan: cpu }).label).toMatch(/CPU rehearsal.*not GPU figures/);
  });
});

// ---- the script, on a fake device bundle -----------------------------------------------------
/** A bundle of the shape device-bundle.sh --inference writes, around a fake CLI and generator. */
function fakeBundle(dir: string): string {
  const b = join(dir, "bundle");
  const pkg = join(dir, "stage", "pkg");
  for (const d of ["bin", "scripts", "bench", "node_modules/node-llama-cpp/llama"])
    mkdirSync(join(pkg, d), { recursive: true });
  cpSync(
    join(root, "scripts", "gpu-inference-acceptance.mjs"),
    join(pkg, "scripts", "gpu-inference-acceptance.mjs"),
  );
  for (const f of ["inference-report.mjs", "inference-phases.mjs"])
    cpSync(join(root, "bench", f), join(pkg, "bench", f));
  cpSync(
    join(root, "test", "gpu", "fixtures", "fake-inference-cli.mjs"),
    join(pkg, "bin", "aitbc-native-miner.js"),
  );
  writeFileSync(
    join(pkg, "scripts", "make-model.mjs"),
    'import { writeFileSync } from "node:fs";\nconst a = process.argv;\nwriteFileSync(a[a.indexOf("--out") + 1], Buffer.alloc(4096));\n',
  );
  writeFileSync(
    join(pkg, "node_modules", "node-llama-cpp", "package.json"),
    '{"name":"node-llama-cpp","version":"3.21.1"}\n',
  );
  mkdirSync(join(dir, "stage", "src", "ggml"), { recursive: true });
  writeFileSync(join(dir, "stage", "src", "CMakeLists.txt"), "# llama.cpp\n");
  mkdirSync(join(dir, "stage", "cpu", "linux-x64", "bins"), { recursive: true });
  writeFileSync(
    join(dir, "stage", "cpu", "linux-x64", "package.json"),
    '{"name":"@node-llama-cpp/linux-x64"}\n',
  );
  mkdirSync(b, { recursive: true });
  // "node": a wrapper around this test's node (FAKE_NODE_HANG: the worker hangs, as a stuck one would).
  writeFileSync(
    join(dir, "stage", "node"),
    `#!/bin/sh\ncase "$*" in *gpu-inference-acceptance.mjs*) [ -n "$FAKE_NODE_HANG" ] && exec sleep 60;; esac\nexec "${process.execPath}" "$@"\n`,
  );
  const sh = (c: string) => execFileSync("bash", ["-c", c], { cwd: join(dir, "stage") });
  sh(`xz -0 -c node > "${b}/node.xz"`);
  sh(`tar -cf - pkg | xz -0 -c > "${b}/pkg.tar.xz"`);
  sh(`tar -C src -cf - . | xz -0 -c > "${b}/llama-src.tar.xz"`);
  sh(`tar -C cpu -cf - linux-x64 | xz -0 -c > "${b}/cpu-prebuilt.tar.xz"`);
  cpSync(script, join(b, "gpu-inference-acceptance.sh"));
  writeFileSync(
    join(b, "MANIFEST.json"),
    `${JSON.stringify({ schema: "aitbc-device-bundle/1", builtAt: "1" })}\n`,
  );
  chmodSync(join(b, "gpu-inference-acceptance.sh"), 0o755);
  return b;
}

function runScript(
  bundle: string,
  reportDir: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; out: string; report: Json | null }> {
  return new Promise((resolve) => {
    execFile(
      "bash",
      [join(bundle, "gpu-inference-acceptance.sh"), reportDir, ...args],
      { env: { ...process.env, ...env }, timeout: 110_000 },
      (err, stdout, stderr) => {
        const file = join(reportDir, "gpu-inference-acceptance.json");
        resolve({
          code: err ? (typeof err.code === "number" ? err.code : null) : 0,
          out: `${stdout}\n${stderr}`,
          report: existsSync(file) ? JSON.parse(readFileSync(file, "utf8")) : null,
        });
      },
    );
  });
}

describe("scripts/gpu-inference-acceptance.sh on a fake bundle", () => {
  let bundle: string;
  const work = join(tmp, "work");
  beforeAll(() => {
    bundle = fakeBundle(tmp);
  });

  it("unpacks where gpu build and getLlama look; a failed build still leaves a report, exit 1", async () => {
    const { code, report, out } = await runScript(bundle, join(tmp, "r1"), [], {
      AITBC_ACCEPT_WORK: work,
      FAKE_BUILD: "fail",
    });
    const nm = join(work, "pkg", "node_modules");
    expect(existsSync(join(nm, "node-llama-cpp", "llama", "llama.cpp", "CMakeLists.txt"))).toBe(true);
    expect(existsSync(join(nm, "@node-llama-cpp", "linux-x64", "package.json"))).toBe(true);
    expect(code, out).toBe(1);
    expect(report).toMatchObject({ schema: SCHEMA, mode: "gpu", complete: true, runOk: false });
    const steps = Object.fromEntries(report!.steps.map((s: { name: string }) => [s.name, s]));
    expect(steps["unpack node"]).toMatchObject({ ok: true, shell: true });
    expect(steps["unpack package"]).toMatchObject({ ok: true, shell: true });
    expect(steps.build.ok).toBe(false);
    expect(report!.build).toMatchObject({
      ok: false,
      command: "aitbc-native-miner gpu build --arch 90 --no-flash-attention",
    });
    expect(report!.build.lastProgress).toMatchObject({ done: 10, total: 277 });
    expect(report!.build.tail).toContain("Unsupported gpu architecture");
    expect(steps.demo.skipped).toBe("build failed");
    expect(report!.failure).toMatch(/did not build/);
    // What doctor and telemetry say is recorded even so.
    expect(report!.truth.doctor.inference).toMatchObject({ status: "ok" });
    expect(report!.targets.map((t: { name: string }) => t.name)).toEqual(Object.keys(TARGETS));
  });

  it("the rehearsal runs every step; one that fails (no runtime) is recorded and the rest go on", async () => {
    // The package is unpacked already from this bundle: not again, and a build tree stays.
    const keep = join(
      work,
      "pkg",
      "node_modules",
      "node-llama-cpp",
      "llama",
      "localBuilds",
      "linux-x64",
      "x",
    );
    mkdirSync(dirname(keep), { recursive: true });
    writeFileSync(keep, "");
    const { code, report, out } = await runScript(bundle, join(tmp, "r2"), ["--cpu"], {
      AITBC_ACCEPT_WORK: work,
    });
    expect(code, out).toBe(1);
    expect(existsSync(keep)).toBe(true);
    expect(report).toMatchObject({ mode: "cpu", complete: true, runOk: false });
    expect(report!.label).toMatch(/not GPU figures/);
    const steps = Object.fromEntries(report!.steps.map((s: { name: string }) => [s.name, s]));
    expect(steps["unpack package"].details).toMatch(/already unpacked/);
    expect(steps.build).toMatchObject({ ok: true });
    expect(steps["model llama-3.2-1b"]).toMatchObject({ ok: true });
    expect(steps.demo).toMatchObject({ ok: true });
    expect(report!.demo).toMatchObject({ jobs: 4, completed: 4, receiptsValid: 4, inference: "CPU" });
    // No node-llama-cpp in the fake package: the measurements fail, each on its own.
    expect(steps["single llama-3.2-1b-q4_0"].ok).toBe(false);
    expect(steps["aggregate 1 in flight"].ok).toBe(false);
    expect(steps["aggregate 4 in flight"].ok).toBe(false);
    expect(report!.single["llama-3.2-1b-q4_0"].error).toBeTruthy();
  });

  it("a worker that hangs past the limit is stopped, and the report says so", async () => {
    const { code, report } = await runScript(bundle, join(tmp, "r3"), [], {
      AITBC_ACCEPT_WORK: join(tmp, "work3"),
      AITBC_ACCEPT_TIMEOUT: "8",
      FAKE_NODE_HANG: "1",
    });
    expect(code).toBe(1);
    expect(report).toMatchObject({ schema: SCHEMA, complete: false, runOk: false, timedOut: true });
    expect(report!.failure).toMatch(/past the 8 s limit/);
    expect(report!.shellSteps.map((s: { step: string }) => s.step)).toEqual([
      "unpack node",
      "unpack package",
    ]);
  });

  it("the worker stopped at the deadline stops its build (resumable) and leaves its report", async () => {
    const stopped = join(tmp, "build-stopped");
    const out = join(tmp, "r5", "report.json");
    mkdirSync(dirname(out), { recursive: true });
    const worker = join(tmp, "stage", "pkg", "scripts", "gpu-inference-acceptance.mjs");
    const child = spawn(process.execPath, [worker, "--out", out, "--work", join(tmp, "work5")], {
      env: { ...process.env, FAKE_BUILD: "hang", FAKE_BUILD_STOPPED: stopped },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    let killed = false;
    child.stdout.on("data", (d) => {
      output += d;
      // The build is under way (its progress is logged): now the deadline comes.
      if (/gpu build: \[11\/277\]/.test(output) && !killed) killed = child.kill("SIGTERM");
    });
    const code = await new Promise((r) => child.on("close", r));
    expect(code).toBe(1);
    expect(readFileSync(stopped, "utf8")).toBe("SIGTERM\n");
    const report = JSON.parse(readFileSync(out, "utf8"));
    expect(report).toMatchObject({ schema: SCHEMA, complete: false, runOk: false });
    expect(report.failure).toMatch(/got SIGTERM/);
    expect(report.steps.find((s: { name: string }) => s.name === "host")).toBeTruthy();
  });

  it("without Node in the bundle, the shell alone writes the report", async () => {
    const empty = join(tmp, "empty-bundle");
    mkdirSync(empty, { recursive: true });
    const { code, report } = await runScript(bundle, join(tmp, "r4"), [], {
      AITBC_BUNDLE: empty,
      AITBC_ACCEPT_WORK: join(tmp, "work4"),
    });
    expect(code).toBe(1);
    expect(report).toMatchObject({ schema: SCHEMA, complete: false, runOk: false });
    expect(report!.failure).toMatch(/no Node/);
    expect(report!.shellSteps[0]).toMatchObject({ step: "unpack node", ok: false });
  });
});

describe("the device bundle (scripts/device-bundle.sh --inference)", () => {
  it("lists in its manifest every file the script reads from the bundle", () => {
    const bundleScript = readFileSync(join(root, "scripts", "device-bundle.sh"), "utf8");
    const runScriptText = readFileSync(script, "utf8");
    const read = new Set([...runScriptText.matchAll(/\$bundle\/([A-Za-z0-9.-]+)/g)].map((m) => m[1]));
    const listed = new Set(
      [...bundleScript.matchAll(/\[`([a-z.-]+)\.\$\{ext\}`\]|"([a-z.-]+\.sh)":/g)].map((m) => m[1] ?? m[2]),
    );
    expect(listed).toEqual(
      new Set(["node", "pkg.tar", "llama-src.tar", "cpu-prebuilt.tar", "gpu-inference-acceptance.sh"]),
    );
    // node.gz is the script's fallback for a gzip bundle; MANIFEST.json is the manifest itself.
    for (const f of read) {
      if (f === "MANIFEST.json" || f === "node.gz") continue;
      expect(
        [...listed].some((l) => f === `${l}.xz` || f === l),
        f,
      ).toBe(true);
    }
    expect(bundleScript).toMatch(/limit_mib=64/);
    // No prebuilt CUDA binary and no git bundle travel: the build makes the one, the source the other.
    expect(bundleScript).toMatch(/rm -rf "\$nlc\/bins" "\$nlc\/llama\/gitRelease\.bundle"/);
  });
});
