#!/usr/bin/env node
// `npm run bench`: every benchmark, one after the other, each printing its table with the ratio
// measured side by side in the same run and writing one JSON file to bench/results/.
//   node bench/run.mjs [--quick | --smoke] [--only NAME[,NAME]]
// Needs dist/ (npm run build) and the native addon (npm run build:native); see docs/benchmarks.md.
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    smoke: { type: "boolean", default: false },
    only: { type: "string" },
  },
});
const quick = values.smoke ? ["--quick", "--smoke"] : values.quick ? ["--quick"] : [];
const BENCHES = [
  ["loop", "miner loop vs the seed's loop (zero-cost backend)", ["loop.mjs", ...quick]],
  ["backlog", "short real-inference jobs: the miner vs the seed's loop", ["backlog.mjs", ...quick]],
  ["passthrough", "tokens/s through the miner vs node-llama-cpp direct", ["passthrough.mjs", ...quick]],
  ["http-hop", "llama backend in process vs Ollama adapter over loopback HTTP", ["http-hop.mjs", ...quick]],
  ["footprint", "start-up, RSS, demo wall time", ["footprint.mjs", ...quick]],
  ["telemetry", "GPU snapshot: NVML addon vs spawning a process", ["telemetry.mjs", ...quick]],
];
const only = values.only ? values.only.split(",") : null;
const unknown = (only ?? []).filter((n) => !BENCHES.some(([name]) => name === n));
if (unknown.length > 0) {
  process.stderr.write(`unknown bench ${unknown.join(", ")}; one of ${BENCHES.map(([n]) => n).join(", ")}\n`);
  process.exit(2);
}
const t0 = performance.now();
for (const [name, what, args] of BENCHES) {
  if (only && !only.includes(name)) continue;
  process.stdout.write(`\n== ${name}: ${what}\n`);
  const t = performance.now();
  execFileSync(process.execPath, [join(root, "bench", args[0]), ...args.slice(1)], {
    cwd: root,
    stdio: "inherit",
  });
  process.stdout.write(`(${name}: ${((performance.now() - t) / 1000).toFixed(1)} s)\n`);
}
process.stdout.write(`\nall benches: ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
