#!/usr/bin/env node
// Side by side: a snapshot of 8 (fake) GPUs through the NVML addon vs the floor of the
// nvidia-smi approach (spawn a process that prints the same CSV, then parse it).
// Run after `npm run build && npm run build:native`: node bench/nvml.mjs
// `addonVsSpawn` is exported so scripts/gpu-acceptance.mjs times a real GPU the same way.
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, realpathSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const run = promisify(execFile);

/** Mean µs per call of `fn` over `n` calls, after a short warm-up. */
export async function timeCalls(n, fn, warmup = Math.min(50, n)) {
  for (let i = 0; i < warmup; i++) await fn();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await fn();
  return Number(process.hrtime.bigint() - t0) / 1e3 / n;
}

/**
 * Time `n` addon snapshots (sync and async) of an open NVML source against `nSpawn` runs of
 * `smiFile smiArgs` parsed as nvidia-smi GPU CSV; every call must see `gpus` devices.
 * Returns µs per call and the spawn/addon ratios.
 */
export async function addonVsSpawn({ src, gpus, smiFile, smiArgs = [], n = 2000, nSpawn = 50, warmup }) {
  const { parseSmiGpuCsv } = await import(join(root, "dist/gpu/index.js"));
  if (src.kind !== "nvml") throw new Error(`NVML addon not in use: ${src.reason}`);
  const syncUs = await timeCalls(
    n,
    () => {
      if (src.snapshotSync().devices.length !== gpus) throw new Error("bad snapshot");
    },
    warmup,
  );
  const asyncUs = await timeCalls(
    Math.max(1, Math.floor(n / 4)),
    async () => {
      if ((await src.snapshot()).devices.length !== gpus) throw new Error("bad snapshot");
    },
    warmup,
  );
  const spawnUs = await timeCalls(
    nSpawn,
    async () => {
      const { stdout } = await run(smiFile, smiArgs, { timeout: 10_000 });
      if (parseSmiGpuCsv(stdout).length !== gpus) throw new Error("bad csv");
    },
    Math.min(3, nSpawn),
  );
  return {
    gpus,
    n,
    nSpawn,
    syncUs,
    asyncUs,
    spawnUs,
    ratioSync: spawnUs / syncUs,
    ratioAsync: spawnUs / asyncUs,
  };
}

async function main() {
  const { createGpuInfoSource, SMI_GPU_FIELDS } = await import(join(root, "dist/gpu/index.js"));
  const { silentLogger } = await import(join(root, "dist/log.js"));
  const GPUS = 8;

  // The fake libnvidia-ml (built by the test setup; built here when missing).
  const lib = join(root, "test/.fixtures/fake-nvml/current/libnvidia-ml.so.1");
  if (!existsSync(lib)) {
    mkdirSync(dirname(lib), { recursive: true });
    execFileSync("cc", [
      "-std=c11",
      "-O1",
      "-shared",
      "-fPIC",
      "-fvisibility=hidden",
      "-o",
      lib,
      join(root, "test/fake-nvml/fake_nvml.c"),
    ]);
  }
  const dir = mkdtempSync(join(tmpdir(), "aitbc-bench-"));
  const cfg = [`device_count=${GPUS}`];
  for (let i = 0; i < GPUS; i++) {
    cfg.push(
      `dev.${i}.name=NVIDIA H100 80GB HBM3`,
      `dev.${i}.uuid=GPU-bench-${i}`,
      `dev.${i}.pci=00000000:0${i}:00.0`,
    );
    cfg.push(
      `dev.${i}.mem_total=85520809984`,
      `dev.${i}.mem_used=1073741824`,
      `dev.${i}.temp=40`,
      `dev.${i}.power=120000`,
    );
    cfg.push(`dev.${i}.procs=${1000 + i}:1073741824`);
  }
  writeFileSync(join(dir, "nvml.conf"), `${cfg.join("\n")}\n`);
  process.env.FAKE_NVML_CONFIG = join(dir, "nvml.conf");

  // The same 8 GPUs as nvidia-smi CSV, printed by a tiny sh script (what a real nvidia-smi costs
  // at least: a process spawn; the real one also initialises NVML, typically 20-100 ms more).
  const row = (i) =>
    [
      i,
      `GPU-bench-${i}`,
      "NVIDIA H100 80GB HBM3",
      `00000000:0${i}:00.0`,
      "550.54.14",
      81559,
      1024,
      80023,
      0,
      0,
      40,
      "120.00",
      "700.00",
      "700.00",
      1980,
      2619,
      1980,
      2619,
      "[N/A]",
      "P0",
      5,
      16,
      5,
      16,
      "Enabled",
      "Enabled",
      0,
      "9.0",
    ].join(", ");
  const csv = Array.from({ length: GPUS }, (_, i) => row(i)).join("\n");
  if (csv.split("\n")[0].split(",").length !== SMI_GPU_FIELDS.length)
    throw new Error("CSV columns out of date");
  const script = join(dir, "nvidia-smi");
  writeFileSync(script, `#!/bin/sh\ncat <<'CSV'\n${csv}\nCSV\n`, { mode: 0o755 });

  const src = await createGpuInfoSource({ nvmlLibrary: lib, log: silentLogger() });
  if (src.kind !== "nvml") throw new Error(`NVML addon not in use: ${src.reason}`);
  // --smoke (the test suite's run of bench/telemetry.mjs): a tenth of the calls, same path.
  const smoke = process.argv.includes("--smoke");
  const r = await addonVsSpawn({
    src,
    gpus: GPUS,
    smiFile: script,
    n: smoke ? 2_000 : 20_000,
    nSpawn: smoke ? 20 : 200,
  });
  await src.close();
  const f = (us) => (us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(1)} µs`);
  console.log(`snapshot of ${GPUS} GPUs (fake NVML), per snapshot:`);
  console.log(`  addon, sync (snapshotSync)        ${f(r.syncUs)}`);
  console.log(`  addon, async (snapshot, threadpool) ${f(r.asyncUs)}`);
  console.log(`  spawn + parse CSV (nvidia-smi floor) ${f(r.spawnUs)}`);
  console.log(`ratio spawn/addon: sync ${r.ratioSync.toFixed(0)}×, async ${r.ratioAsync.toFixed(0)}×`);
}

// Run as a script (not when imported).
if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
