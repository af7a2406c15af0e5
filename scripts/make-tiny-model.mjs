#!/usr/bin/env node
// Write a deterministic random-weight GGUF `llama` model (for tests, the demo and benchmarks).
//   node scripts/make-tiny-model.mjs --out models/tiny.gguf
//   node scripts/make-tiny-model.mjs --preset bench --out models/tiny-bench.gguf
// Needs the compiled library (npm run build). Real shapes (Llama 3.2 1B, 3.1 8B; Q4_0, Q8_0, F16):
// scripts/make-model.mjs.
import { basename } from "node:path";
import { parseArgs } from "node:util";

const usage = `usage: make-tiny-model.mjs --out FILE [--preset test|bench] [--vocab N] [--embd N]
       [--layers N] [--heads N] [--ff N] [--ctx N] [--seed N] [--f16] [--name NAME]`;

let args;
try {
  args = parseArgs({
    options: {
      out: { type: "string" },
      preset: { type: "string", default: "test" },
      name: { type: "string" },
      vocab: { type: "string" },
      embd: { type: "string" },
      layers: { type: "string" },
      heads: { type: "string" },
      ff: { type: "string" },
      ctx: { type: "string" },
      seed: { type: "string" },
      f16: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  }).values;
} catch (err) {
  process.stderr.write(`${err.message}\n${usage}\n`);
  process.exit(2);
}
if (args.help) {
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}
if (!args.out) {
  process.stderr.write(`--out is required\n${usage}\n`);
  process.exit(2);
}

let lib;
try {
  lib = await import("../dist/backends/tiny-gguf.js");
} catch (err) {
  process.stderr.write(`cannot load dist/backends/tiny-gguf.js (run npm run build first): ${err.message}\n`);
  process.exit(1);
}

const presets = { test: lib.TEST_PRESET, bench: lib.BENCH_PRESET };
const base = presets[args.preset];
if (!base) {
  process.stderr.write(`--preset must be test or bench\n`);
  process.exit(2);
}
const num = (flag) => {
  const v = args[flag];
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) {
    process.stderr.write(`--${flag} must be a non-negative integer, got ${JSON.stringify(v)}\n`);
    process.exit(2);
  }
  return Number(v);
};
const opts = {
  ...base,
  name: args.name ?? basename(args.out).replace(/\.gguf$/, ""),
  vocab: num("vocab") ?? base.vocab,
  embd: num("embd") ?? base.embd,
  layers: num("layers") ?? base.layers,
  heads: num("heads") ?? base.heads,
  ff: num("ff") ?? base.ff,
  ctx: num("ctx") ?? base.ctx,
  seed: num("seed") ?? base.seed,
  f16: args.f16 ?? base.f16,
};
try {
  lib.writeTinyGguf(args.out, opts);
} catch (err) {
  process.stderr.write(`${err.message}\n`);
  process.exit(1);
}
const { statSync } = await import("node:fs");
process.stdout.write(
  `${args.out}: ${(statSync(args.out).size / 1e6).toFixed(2)} MB ${JSON.stringify(opts)}\n`,
);
