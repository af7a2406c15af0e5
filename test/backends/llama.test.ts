// The llama backend on the generated tiny model, CPU, one thread (docs/models.md: more threads than
// cores makes it ~100x slower). Outputs are compared with each other, never with fixed text.
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLlamaBackend, type LlamaBackend } from "../../src/backends/llama/index.js";
import { writeTinyGguf } from "../../src/backends/tiny-gguf.js";
import { BackendError, type InferenceResult } from "../../src/backends/types.js";
import { createLogger, silentLogger } from "../../src/log.js";
import { fixturesModels, never, req, tempDir, tinyPath } from "../support/backends.js";
import { captureLog } from "../support/log-lines.js";

const PROMPTS = ["The quick brown fox", "Once upon a time", "hello world", "AITBC miners compute"];

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "resolved";
  } catch (err) {
    expect(err).toBeInstanceOf(BackendError);
    return (err as BackendError).code;
  }
}

describe("llama backend on the tiny model", () => {
  let backend: LlamaBackend;
  beforeAll(async () => {
    backend = createLlamaBackend({
      modelsDir: fixturesModels,
      threads: 1,
      concurrency: 4,
      gpu: false,
      log: silentLogger(),
      contextSize: 512,
    });
    await backend.init();
  });
  afterAll(async () => {
    await backend.close();
  });

  it("advertises exactly the models in the directory", () => {
    expect(backend.listModels()).toEqual([
      expect.objectContaining({ name: "tiny", sizeBytes: expect.any(Number), source: tinyPath }),
    ]);
    expect(backend.hasModel("tiny")).toBe(true);
    expect(backend.hasModel("tiny:latest")).toBe(true);
    expect(backend.hasModel("llama3")).toBe(false);
  });

  it("starts the runtime on the CPU when the GPU is off (init does not wait for it; warm-up does)", async () => {
    expect(await backend.warm!([], new AbortController().signal)).toEqual([]);
    expect(backend.gpuType).toBe(false);
  });

  it("greedy output is deterministic, runs to maxTokens in ASCII and counts tokens", async () => {
    const a = await backend.generate(req({ maxTokens: 24 }), never());
    const b = await backend.generate(req({ maxTokens: 24 }), never());
    expect(a.output).toBe(b.output);
    expect(a.output.length).toBeGreaterThan(0);
    expect(a.output).toMatch(/^[\x20-\x7e]*$/);
    expect(a).toMatchObject({
      model: "tiny",
      backend: "llama",
      stopReason: "maxTokens",
      completionTokens: 24,
    });
    expect(a.promptTokens).toBeGreaterThan(0);
    expect(b.promptTokens).toBe(a.promptTokens); // the sequence was cleared: no cached prefix
    const other = await backend.generate(req({ prompt: "something else entirely", maxTokens: 24 }), never());
    expect(other.output).not.toBe(a.output);
  });

  it("sampling with a seed is reproducible", async () => {
    const r = req({ temperature: 1, topP: 0.9, seed: 42, maxTokens: 24 });
    const a = await backend.generate(r, never());
    const b = await backend.generate(r, never());
    expect(a.output).toBe(b.output);
    expect(a.completionTokens).toBe(24);
  });

  it("stops at a stop string", async () => {
    const full = await backend.generate(req({ maxTokens: 32 }), never());
    const stop = full.output.slice(8, 11);
    const cut = await backend.generate(req({ maxTokens: 32, stop: [stop] }), never());
    expect(cut.stopReason).toBe("stop");
    expect(cut.output).toBe(full.output.slice(0, full.output.indexOf(stop)));
    expect(cut.completionTokens).toBeLessThan(32);
  });

  it("runs 6 jobs at once on 4 sequences with the same outputs as one by one", async () => {
    const jobs = [...PROMPTS, "six", "seven and eight"].map((prompt) => req({ prompt, maxTokens: 16 }));
    const sequential: InferenceResult[] = [];
    for (const j of jobs) sequential.push(await backend.generate(j, never()));
    const parallel = await Promise.all(jobs.map((j) => backend.generate(j, never())));
    expect(parallel.map((r) => r.output)).toEqual(sequential.map((r) => r.output));
    expect(parallel.map((r) => r.completionTokens)).toEqual(sequential.map((r) => r.completionTokens));
  });

  it("aborts mid-generation and keeps working afterwards", async () => {
    const before = await backend.generate(req({ maxTokens: 16 }), never());
    const ac = new AbortController();
    // 400 tokens take far longer than 10 ms even on a fast host.
    const p = backend.generate(req({ maxTokens: 400 }), ac.signal);
    setTimeout(() => ac.abort(), 10);
    expect(await code(p)).toBe("aborted");
    const already = new AbortController();
    already.abort();
    expect(await code(backend.generate(req(), already.signal))).toBe("aborted");
    const after = await backend.generate(req({ maxTokens: 16 }), never());
    expect(after.output).toBe(before.output);
  });

  it("fails a job for a model it does not have, naming what it has", async () => {
    const err = await backend.generate(req({ model: "llama3:8b" }), never()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect((err as BackendError).code).toBe("model_not_found");
    expect((err as BackendError).message).toMatch(/llama3:8b.*tiny/);
  });

  it("refuses a prompt longer than the context", async () => {
    const err = await backend.generate(req({ prompt: "x ".repeat(2000) }), never()).catch((e: unknown) => e);
    expect((err as BackendError).code).toBe("inference_failed");
    expect((err as BackendError).message).toMatch(/context/);
  });

  it("unloadAll drops the model; the next job loads it again with the same output", async () => {
    const captured = captureLog();
    const own = createLlamaBackend({
      modelsDir: fixturesModels,
      threads: 1,
      concurrency: 1,
      gpu: false,
      log: captured.log,
      contextSize: 256,
      preflight: false,
    });
    await own.init();
    try {
      const count = (e: string) => captured.events(e).length;
      const a = await own.generate(req(), never());
      expect(count("model_loaded")).toBe(1);
      await own.unloadAll();
      expect(count("model_unloaded")).toBe(1);
      const b = await own.generate(req(), never());
      expect(count("model_loaded")).toBe(2); // loaded again, not served from memory
      expect(b.output).toBe(a.output);
    } finally {
      await own.close();
    }
  });
});

describe("llama backend model cache", () => {
  it("keeps at most maxLoadedModels, evicting the least recently used, and tag names resolve", async () => {
    const dir = tempDir("llama-cache-");
    writeTinyGguf(join(dir, "a.gguf"), { name: "a", seed: 11 });
    writeTinyGguf(join(dir, "b-q4.gguf"), { name: "b", seed: 12 });
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    const backend = createLlamaBackend({
      modelsDir: dir,
      threads: 1,
      concurrency: 1,
      gpu: false,
      log: createLogger({ level: "info", destination: sink }),
      maxLoadedModels: 1,
      contextSize: 256,
      preflight: false,
    });
    await backend.init();
    try {
      expect(
        backend
          .listModels()
          .map((m) => m.name)
          .sort(),
      ).toEqual(["a", "b-q4", "b:q4"]);
      const a1 = await backend.generate(req({ model: "a" }), never());
      const b1 = await backend.generate(req({ model: "b:q4" }), never());
      const a2 = await backend.generate(req({ model: "a:latest" }), never());
      expect(a1.output).not.toBe(b1.output); // different weights, different model
      expect(a2.output).toBe(a1.output);
      expect(b1.model).toBe("b:q4");
      const events = lines.map((l) => JSON.parse(l) as { event?: string; path?: string });
      expect(events.filter((e) => e.event === "model_loaded")).toHaveLength(3);
      expect(events.filter((e) => e.event === "model_unloaded").map((e) => e.path)).toEqual([
        join(dir, "a.gguf"),
        join(dir, "b-q4.gguf"),
      ]);
    } finally {
      await backend.close();
    }
  });

  it("refuses a model larger than the VRAM budget", async () => {
    const backend = createLlamaBackend({
      modelsDir: fixturesModels,
      threads: 1,
      concurrency: 1,
      gpu: false,
      log: silentLogger(),
      vramBudgetBytes: 1000,
      preflight: false,
    });
    await backend.init();
    try {
      expect(await code(backend.generate(req(), never()))).toBe("insufficient_vram");
    } finally {
      await backend.close();
    }
  });

  it("a model map names a file anywhere; an hf: entry that cannot download is not offered", async () => {
    const dir = tempDir("llama-map-");
    copyFileSync(tinyPath, join(dir, "weights.bin.gguf"));
    const map = join(dir, "map.json");
    writeFileSync(
      map,
      JSON.stringify({ "org/custom:7b": "weights.bin.gguf", remote: "hf:nobody/nothing/none.gguf" }),
    );
    const backend = createLlamaBackend({
      modelMapFile: map,
      threads: 1,
      concurrency: 1,
      gpu: false,
      log: silentLogger(),
      contextSize: 256,
      preflight: false,
      downloadDir: join(dir, "dl"),
      downloadStallMs: 1500,
    });
    await backend.init();
    try {
      expect(backend.listModels().map((m) => m.name)).toEqual(["org/custom:7b"]);
      const r = await backend.generate(req({ model: "org/custom:7b", maxTokens: 4 }), never());
      expect(r).toMatchObject({ model: "org/custom:7b", completionTokens: 4 });
      expect(await code(backend.generate(req({ model: "remote" }), never()))).toBe("model_not_found");
    } finally {
      await backend.close();
    }
  });
});

describe("llama backend: only complete models are offered", () => {
  it("a truncated file is not advertised, a complete one beside it is; a job for it says why", async () => {
    const dir = tempDir("llama-trunc-");
    const bytes = readFileSync(tinyPath);
    copyFileSync(tinyPath, join(dir, "tiny.gguf"));
    copyFileSync(tinyPath, join(dir, "llama3.gguf"));
    writeFileSync(join(dir, "big.gguf"), bytes.subarray(0, bytes.length >> 1));
    // A broken llama3-8b.gguf must not let llama3.gguf answer llama3:8b in its place.
    writeFileSync(join(dir, "llama3-8b.gguf"), bytes.subarray(0, bytes.length - 1));
    const lines: { event?: string; path?: string; reason?: string; msg?: string }[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(JSON.parse(String(chunk)));
        cb();
      },
    });
    const backend = createLlamaBackend({
      modelsDir: dir,
      threads: 1,
      concurrency: 1,
      gpu: false,
      log: createLogger({ level: "info", destination: sink }),
      contextSize: 256,
      preflight: false,
    });
    await backend.init();
    try {
      const names = () =>
        backend
          .listModels()
          .map((m) => m.name)
          .sort();
      expect(names()).toEqual(["llama3", "tiny"]);
      expect(backend.hasModel("big")).toBe(false);
      expect(backend.hasModel("llama3:8b")).toBe(false);
      expect(backend.hasModel("llama3")).toBe(true);
      const err = await backend.generate(req({ model: "big" }), never()).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "model_not_found" });
      expect((err as Error).message).toMatch(/big\.gguf: truncated: 0\.2 MB of 0\.5 MB .*download it again/);
      const tagged = await backend.generate(req({ model: "llama3:8b" }), never()).catch((e: unknown) => e);
      expect(tagged).toMatchObject({ code: "model_not_found" });
      expect((tagged as Error).message).toMatch(/llama3-8b\.gguf: truncated/);
      expect(await backend.generate(req({ model: "tiny", maxTokens: 2 }), never())).toMatchObject({
        completionTokens: 2,
      });

      // Rescans do not repeat the warning; a file that becomes complete is offered.
      await backend.refresh();
      await backend.refresh();
      const skipped = lines.filter((l) => l.event === "model_skipped");
      expect(skipped.map((l) => l.path).sort()).toEqual([join(dir, "big.gguf"), join(dir, "llama3-8b.gguf")]);
      expect(skipped[0]?.msg).toMatch(/^model \S+ not offered: truncated: /);
      copyFileSync(tinyPath, join(dir, "big.gguf"));
      await backend.refresh();
      expect(names()).toEqual(["big", "llama3", "tiny"]);
      expect(lines.filter((l) => l.event === "model_skipped")).toHaveLength(2);
    } finally {
      await backend.close();
    }
  });

  it("an empty models directory offers nothing; a file added later is offered after refresh", async () => {
    const dir = tempDir("llama-empty-");
    const backend = createLlamaBackend({
      modelsDir: dir,
      threads: 1,
      concurrency: 1,
      gpu: false,
      log: silentLogger(),
      preflight: false,
    });
    await backend.init();
    try {
      expect(backend.listModels()).toEqual([]);
      expect(await code(backend.generate(req(), never()))).toBe("model_not_found");
      copyFileSync(tinyPath, join(dir, "tiny.gguf"));
      await backend.refresh();
      expect(backend.listModels().map((m) => m.name)).toEqual(["tiny"]);
    } finally {
      await backend.close();
    }
  });
});
