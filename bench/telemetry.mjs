#!/usr/bin/env node
// Telemetry: the existing NVML-addon-vs-spawn figure (bench/nvml.mjs), run as a child process
// and parsed, so it lands in the same kind of table and results file as the other benches.
// nvml.mjs is repeated (3 runs, 1 with --quick) for min / median / max.
//   node bench/telemetry.mjs [--quick]
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { benchArgs, mmm, printTable, ratio, root, summary, writeResult } from "./lib.mjs";

const { quick, smoke } = benchArgs();
const RUNS = quick ? 1 : 3;
const run = promisify(execFile);
const us = (line) => {
  const m = /([\d.]+) (µs|ms)\s*$/.exec(line ?? "");
  if (!m) throw new Error(`unexpected nvml.mjs line: ${line}`);
  return Number(m[1]) * (m[2] === "ms" ? 1000 : 1);
};
const figures = { sync: [], async: [], spawn: [] };
for (let i = 0; i < RUNS; i++) {
  const { stdout } = await run(
    process.execPath,
    [join(root, "bench", "nvml.mjs"), ...(smoke ? ["--smoke"] : [])],
    {
      cwd: root,
      timeout: 300_000,
    },
  );
  const lines = stdout.split("\n");
  figures.sync.push(us(lines.find((l) => l.includes("addon, sync"))));
  figures.async.push(us(lines.find((l) => l.includes("addon, async"))));
  figures.spawn.push(us(lines.find((l) => l.includes("spawn + parse"))));
}
const spawnMed = summary(figures.spawn).median;
printTable(
  `telemetry: one snapshot of 8 GPUs (fake NVML), µs per snapshot, ${RUNS} run(s) of bench/nvml.mjs`,
  ["path", "µs min / median / max", "ratio (spawn / this)"],
  [
    [
      "NVML addon, sync (snapshotSync)",
      mmm(figures.sync, 1),
      ratio(spawnMed, summary(figures.sync).median, 0),
    ],
    [
      "NVML addon, async (threadpool)",
      mmm(figures.async, 1),
      ratio(spawnMed, summary(figures.async).median, 0),
    ],
    ["spawn + parse CSV (nvidia-smi floor)", mmm(figures.spawn, 0), "1×"],
  ],
);
await writeResult(
  "telemetry",
  {
    settings: { runs: RUNS, gpus: 8 },
    snapshotMicroseconds: {
      addonSync: summary(figures.sync),
      addonAsync: summary(figures.async),
      spawn: summary(figures.spawn),
    },
  },
  { quick },
);
