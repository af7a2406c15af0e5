#!/usr/bin/env node
// Write a random-weight GGUF `llama` model of a real shape, streamed to disk (no download, no npm):
//   node scripts/make-model.mjs --shape llama-3.1-8b --type q4_0 --out models/llama-3.1-8b-q4_0.gguf
// Needs the compiled library (dist/, from npm run build). Same options → same bytes.
import { parseArgs } from "node:util";

const usage = `usage: make-model.mjs --shape llama-3.2-1b|llama-3.1-8b|tiny|tiny-bench --type q4_0|q8_0|f16
       --out FILE [--seed N] [--ctx N] [--name NAME] [--quiet]`;

let args;
try {
  args = parseArgs({
    options: {
      shape: { type: "string" },
      type: { type: "string", default: "q4_0" },
      out: { type: "string" },
      seed: { type: "string" },
      ctx: { type: "string" },
      name: { type: "string" },
      quiet: { type: "boolean", short: "q" },
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
const fail = (msg, code = 2) => {
  process.stderr.write(`${msg}\n${code === 2 ? `${usage}\n` : ""}`);
  process.exit(code);
};
if (!args.out) fail("--out is required");
if (!args.shape) fail("--shape is required");
const int = (flag) => {
  const v = args[flag];
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) fail(`--${flag} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return Number(v);
};
const seed = int("seed");
const ctx = int("ctx");

let lib;
try {
  lib = await import("../dist/backends/gguf/writer.js");
} catch (err) {
  fail(`cannot load dist/backends/gguf/writer.js (run npm run build first): ${err.message}`, 1);
}
const { SHAPE_NAMES } = await import("../dist/backends/gguf/shapes.js");
const { WEIGHT_TYPES } = await import("../dist/backends/gguf/quant.js");
if (!SHAPE_NAMES.includes(args.shape)) fail(`--shape must be one of ${SHAPE_NAMES.join(", ")}`);
if (!WEIGHT_TYPES.includes(args.type)) fail(`--type must be one of ${WEIGHT_TYPES.join(", ")}`);

const opts = {
  shape: args.shape,
  type: args.type,
  ...(seed === undefined ? {} : { seed }),
  ...(ctx === undefined ? {} : { ctx }),
  ...(args.name === undefined ? {} : { name: args.name }),
};
const mb = (n) => (n / 1e6).toFixed(0);
// One progress line every 5 s or 10 %, whichever comes first, at most one a second.
const started = performance.now();
let lastAt = started;
let lastStep = 0;
const onProgress = ({ bytesWritten, totalBytes }) => {
  if (args.quiet) return;
  const now = performance.now();
  const step = Math.floor((bytesWritten / totalBytes) * 10);
  if (now - lastAt < 1000 || (now - lastAt < 5000 && step === lastStep)) return;
  if (bytesWritten === totalBytes) return; // the final line says it
  lastAt = now;
  lastStep = step;
  const s = (now - started) / 1000;
  process.stdout.write(
    `${args.out}: ${mb(bytesWritten)} of ${mb(totalBytes)} MB (${Math.floor((bytesWritten / totalBytes) * 100)} %), ` +
      `${s.toFixed(1)} s, ${mb(bytesWritten / s)} MB/s\n`,
  );
};
try {
  const r = await lib.writeModel(args.out, opts, { onProgress });
  process.stdout.write(
    `${r.path}: ${r.bytes} bytes (${(r.bytes / 2 ** 30).toFixed(2)} GiB) in ${r.seconds.toFixed(1)} s, ` +
      `${mb(r.bytes / r.seconds)} MB/s (shape ${args.shape}, type ${args.type}, seed ${seed ?? 1})\n`,
  );
} catch (err) {
  fail(
    err instanceof RangeError ? err.message : `cannot write ${args.out}: ${err.message}`,
    err instanceof RangeError ? 2 : 1,
  );
}
