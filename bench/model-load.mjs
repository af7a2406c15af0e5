#!/usr/bin/env node
// What reading a model's weights (useMmap: false) costs against mapping them: load time, first
// completion, tokens/s and resident memory, each model loaded by both in fresh child processes,
// alternately, in one run (docs/models.md, "Weights are read, not mapped").
//   node bench/model-load.mjs [--model FILE]... [--rounds N] [--tokens N] [--cold] [--threads N]
// Default model: the tiny test model (test/.fixtures/models/tiny.gguf). --cold drops the file from
// the page cache before every load (dd iflag=nocache; works without root).
import { execFileSync, spawn } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    child: { type: "string" },
    model: { type: "string", multiple: true },
    rounds: { type: "string", default: "3" },
    tokens: { type: "string", default: "16" },
    threads: { type: "string", default: "1" },
    cold: { type: "boolean", default: false },
  },
});

/** Fields of /proc/self/status in bytes (Linux). */
function memory() {
  const status = readFileSync("/proc/self/status", "utf8");
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN) * 1024;
  return { rss: kb("VmRSS"), anon: kb("RssAnon"), file: kb("RssFile"), peak: kb("VmHWM") };
}

async function child(mode, modelPath) {
  const { getLlama, LlamaCompletion } = await import("node-llama-cpp");
  const threads = Number(values.threads);
  const llama = await getLlama({ gpu: false, build: "never", maxThreads: threads });
  const before = memory();
  const t0 = performance.now();
  const model = await llama.loadModel({ modelPath, useMmap: mode === "mmap" });
  const loadMs = performance.now() - t0;
  const afterLoad = memory();
  const mapped = readFileSync("/proc/self/maps", "utf8").includes(modelPath);
  const context = await model.createContext({ contextSize: 256, threads, sequences: 1 });
  const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
  const t1 = performance.now();
  await completion.generateCompletion("The quick brown fox", { maxTokens: 1 });
  const firstMs = performance.now() - t1;
  const tokens = Number(values.tokens);
  const t2 = performance.now();
  await completion.generateCompletion(" jumps over", { maxTokens: tokens });
  const tokPerS = (tokens / (performance.now() - t2)) * 1000;
  const afterGen = memory();
  process.stdout.write(
    `${JSON.stringify({ mode, loadMs, firstMs, tokPerS, mapped, before, afterLoad, afterGen })}\n`,
  );
  process.exit(0); // the measurement is taken; disposing a large model only adds wall time
}

function runChild(mode, modelPath) {
  return new Promise((resolve, reject) => {
    const p = spawn(
      process.execPath,
      [import.meta.filename, "--child", mode, "--model", modelPath, ...forward()],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    p.stdout.on("data", (d) => {
      out += d;
    });
    p.on("exit", (code, signal) => {
      const line = out.trim().split("\n").pop() ?? "";
      if (code === 0 && line.startsWith("{")) resolve(JSON.parse(line));
      else reject(new Error(`${mode} child exited ${code ?? signal}: ${out}`));
    });
  });
}

const forward = () => ["--tokens", values.tokens, "--threads", values.threads];
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const mb = (b) => (b / 1e6).toFixed(1);

async function parent() {
  const root = join(import.meta.dirname, "..");
  const models = values.model ?? [join(root, "test", ".fixtures", "models", "tiny.gguf")];
  const rounds = Number(values.rounds);
  const rows = [];
  const results = [];
  for (const modelPath of models) {
    const size = statSync(modelPath).size;
    const runs = { mmap: [], read: [] };
    for (let i = 0; i < rounds; i++) {
      // Alternate which goes first, so neither always meets the other's page cache or CPU heat.
      for (const mode of i % 2 === 0 ? ["mmap", "read"] : ["read", "mmap"]) {
        if (values.cold) execFileSync("dd", [`if=${modelPath}`, "iflag=nocache", "count=0", "status=none"]);
        else execFileSync("cat", [modelPath], { stdio: ["ignore", "ignore", "inherit"] }); // warm
        runs[mode].push(await runChild(mode, modelPath));
      }
    }
    const m = (mode, f) => median(runs[mode].map(f));
    for (const mode of ["mmap", "read"]) {
      rows.push([
        `${modelPath.split("/").pop()} (${mb(size)} MB)`,
        mode === "mmap" ? "mmap (before)" : "read (useMmap: false)",
        m(mode, (r) => r.loadMs).toFixed(0),
        m(mode, (r) => r.firstMs).toFixed(0),
        m(mode, (r) => r.tokPerS).toFixed(1),
        mb(m(mode, (r) => r.afterGen.rss - r.before.rss)),
        mb(m(mode, (r) => r.afterGen.anon - r.before.anon)),
        mb(m(mode, (r) => r.afterGen.file - r.before.file)),
        mb(m(mode, (r) => r.afterGen.peak)),
        String(runs[mode].every((r) => r.mapped)),
      ]);
    }
    const ratio = (f) => (m("read", f) / m("mmap", f)).toFixed(2);
    rows.push([
      "",
      "read / mmap",
      `${ratio((r) => r.loadMs)}×`,
      `${ratio((r) => r.firstMs)}×`,
      `${ratio((r) => r.tokPerS)}×`,
      `${ratio((r) => r.afterGen.rss - r.before.rss)}×`,
      "",
      "",
      `${ratio((r) => r.afterGen.peak)}×`,
      "",
    ]);
    results.push({ modelPath, size, runs });
  }
  const header = [
    "model",
    "weights",
    "load ms",
    "1st token ms",
    "tok/s",
    "RSS +MB",
    "anon +MB",
    "file +MB",
    "peak RSS MB",
    "file mapped",
  ];
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  const line = (r) => r.map((c, i) => c.padEnd(widths[i])).join("  ");
  process.stdout.write(
    `model load, ${rounds} round(s) each, medians, ${values.cold ? "cold" : "warm"} page cache, ` +
      `${values.threads} thread(s), load average ${(await import("node:os")).loadavg()[0].toFixed(1)}\n` +
      `${[line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n")}\n`,
  );
  const { writeResult } = await import("./lib.mjs");
  await writeResult("model-load", { rounds, cold: values.cold, threads: values.threads, results });
}

if (values.child) await child(values.child, values.model[0]);
else await parent();
