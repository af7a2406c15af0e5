#!/usr/bin/env node
// `npm run bench`: every benchmark, each printing its side-by-side ratio. Needs dist/ and the
// native addon (npm ci builds both).
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const node = (args) => execFileSync(process.execPath, args, { cwd: root, stdio: "inherit" });

process.stdout.write("== GPU snapshot: NVML addon vs spawning a process (nvidia-smi floor)\n");
node([join(root, "bench", "nvml.mjs")]);
process.stdout.write("\n== Inference: one job at a time vs batched sequences (aitbc-native-miner bench)\n");
node([join(root, "bin", "aitbc-native-miner.js"), "bench", ...process.argv.slice(2)]);
