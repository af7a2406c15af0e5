// The whole prompt is always what the model sees (no silent cut from the start), token counts are
// exact, and a job never runs on a model that is being unloaded. The tiny model's own tokenizer,
// loaded here on a separate runtime, is the oracle for prompt lengths.
import { getLlama, type Llama, LlamaLogLevel, type LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLlamaBackend, type LlamaBackend } from "../../src/backends/llama/index.js";
import { preflightTimeoutMs } from "../../src/backends/llama/preflight.js";
import { BackendError } from "../../src/backends/types.js";
import { silentLogger } from "../../src/log.js";
import { fixturesModels, never, req, tinyPath } from "../support/backends.js";

const CTX = 256;
let oracleLlama: Llama;
let oracle: LlamaModel;
let small: LlamaBackend;
let large: LlamaBackend;

const backend = (contextSize: number) =>
  createLlamaBackend({
    modelsDir: fixturesModels,
    threads: 1,
    concurrency: 1,
    gpu: false,
    log: silentLogger(),
    contextSize,
    preflight: false,
  });

/** Tokens the model is fed for `prompt`: its tokenization as a completion input, plus BOS. */
function fed(prompt: string): number {
  const bos = oracle.tokens.shouldPrependBosToken ? 1 : 0;
  return oracle.tokenize(prompt, false, bos ? "trimLeadingSpace" : undefined).length + bos;
}

/** A prompt fed as exactly `n` tokens (BOS included); the first word varies with `lead`. */
function promptOf(n: number, lead = "x"): string {
  let p = lead;
  while (fed(`${p} x`) <= n) p += " x";
  if (fed(p) < n) p += " "; // a lone space is one more token
  expect(fed(p)).toBe(n);
  return p;
}

beforeAll(async () => {
  oracleLlama = await getLlama({ gpu: false, build: "never", maxThreads: 1, logLevel: LlamaLogLevel.error });
  oracle = await oracleLlama.loadModel({ modelPath: tinyPath });
  small = backend(CTX);
  large = backend(2 * CTX);
  await Promise.all([small.init(), large.init()]);
});
afterAll(async () => {
  await small.close();
  await large.close();
  await oracle.dispose();
  await oracleLlama.dispose();
});

describe("llama backend: prompts and the context window", () => {
  it("counts the tokens fed and the tokens generated exactly", async () => {
    const prompt = "The quick brown fox";
    const r = await small.generate(req({ prompt, maxTokens: 24 }), never());
    expect(r.promptTokens).toBe(fed(prompt));
    expect(r.completionTokens).toBe(24);
    expect(r.stopReason).toBe("maxTokens");
  });

  it("answers a prompt that fills most of the context whole, as a larger context does", async () => {
    // 240 of 256 tokens: past node-llama-cpp's default 10% shift reserve, which would drop the start.
    const prompt = promptOf(240);
    const a = await small.generate(req({ prompt, maxTokens: 8 }), never());
    const b = await large.generate(req({ prompt, maxTokens: 8 }), never());
    expect(a.promptTokens).toBe(240);
    expect(a.completionTokens).toBe(8);
    expect(a.output).toBe(b.output);
    expect(b.promptTokens).toBe(240);
  });

  it("caps generation at the room left instead of shifting prompt tokens out", async () => {
    const prompt = promptOf(250);
    const r = await small.generate(req({ prompt, maxTokens: 40 }), never());
    expect(r).toMatchObject({ promptTokens: 250, completionTokens: CTX - 250, stopReason: "maxTokens" });
    const full = await large.generate(req({ prompt, maxTokens: 40 }), never());
    expect(full.completionTokens).toBe(40);
    expect(full.output.startsWith(r.output)).toBe(true);
    const last = await small.generate(req({ prompt: promptOf(CTX - 1), maxTokens: 8 }), never());
    expect(last).toMatchObject({ promptTokens: CTX - 1, completionTokens: 1 });
  });

  it("refuses a prompt that leaves no room for one generated token, naming the counts", async () => {
    for (const n of [CTX, CTX + 30]) {
      const err = await small.generate(req({ prompt: promptOf(n) }), never()).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BackendError);
      expect((err as BackendError).code).toBe("inference_failed");
      expect((err as BackendError).message).toContain(`prompt is ${n} tokens`);
      expect((err as BackendError).message).toContain(`context holds ${CTX} tokens`);
    }
  });
});

describe("llama backend: unloading while jobs arrive", () => {
  it("a job started in the same tick as unloadAll runs on a live model", async () => {
    const first = await small.generate(req({ maxTokens: 8 }), never());
    const unload = small.unloadAll();
    const job = small.generate(req({ maxTokens: 8 }), never());
    const [, r] = await Promise.all([unload, job]);
    expect(r.output).toBe(first.output);
    // and the other order: a job first, then unloadAll before it reached its sequence
    const job2 = small.generate(req({ maxTokens: 8 }), never());
    const unload2 = small.unloadAll();
    expect((await job2).output).toBe(first.output);
    await unload2;
    expect((await small.generate(req({ maxTokens: 8 }), never())).output).toBe(first.output);
  });

  it("says whether a model is loaded (VRAM admission skips loaded models)", async () => {
    await small.unloadAll();
    expect(small.isLoaded?.("tiny")).toBe(false);
    await small.generate(req({ maxTokens: 2 }), never());
    expect(small.isLoaded?.("tiny")).toBe(true);
    expect(small.isLoaded?.("no-such-model")).toBe(false);
    await small.unloadAll();
    expect(small.isLoaded?.("tiny")).toBe(false);
  });

  it("with unloadAfterJob, overlapping jobs never run on a disposed model", async () => {
    const b = createLlamaBackend({
      modelsDir: fixturesModels,
      threads: 1,
      concurrency: 1,
      gpu: false,
      log: silentLogger(),
      contextSize: CTX,
      preflight: false,
      unloadAfterJob: true,
    });
    await b.init();
    try {
      const outs = await Promise.all([1, 2, 3].map(() => b.generate(req({ maxTokens: 4 }), never())));
      expect(outs.map((o) => o.completionTokens)).toEqual([4, 4, 4]);
      expect(new Set(outs.map((o) => o.output)).size).toBe(1);
    } finally {
      await b.close();
    }
  });
});

describe("llama backend: a preflight that runs out of time", () => {
  it("scales the time limit with the file size", () => {
    expect(preflightTimeoutMs(null)).toBe(60_000);
    expect(preflightTimeoutMs(2 ** 30)).toBe(90_000);
    expect(preflightTimeoutMs(40 * 2 ** 30)).toBe(1_260_000);
  });

  it("keeps the model unoffered and retries it on the next job or refresh, never failing it for good", async () => {
    let limit = 1; // no child process starts node in 1 ms
    const make = () =>
      createLlamaBackend({
        modelsDir: fixturesModels,
        threads: 1,
        concurrency: 1,
        gpu: false,
        log: silentLogger(),
        contextSize: CTX,
        preflightTimeoutMs: () => limit,
      });
    const b = make();
    await b.init();
    try {
      const e = await b.generate(req({ maxTokens: 4 }), never()).catch((x: unknown) => x);
      expect((e as BackendError).code).toBe("model_load_failed");
      expect((e as BackendError).message).toMatch(/not verified yet.*timed out after 1 ms/);
      expect(b.listModels()).toEqual([]);
      expect(b.hasModel("tiny")).toBe(false);
      await b.refresh(); // still too little time: still not offered, still not failed
      expect(b.listModels()).toEqual([]);
      limit = 60_000;
      expect((await b.generate(req({ maxTokens: 4 }), never())).completionTokens).toBe(4);
      expect(b.listModels().map((m) => m.name)).toEqual(["tiny"]);
    } finally {
      await b.close();
    }
    limit = 1;
    const c = make();
    await c.init();
    try {
      await c.generate(req({ maxTokens: 4 }), never()).catch(() => undefined);
      expect(c.hasModel("tiny")).toBe(false);
      limit = 60_000;
      await c.refresh();
      expect(c.hasModel("tiny")).toBe(true);
    } finally {
      await c.close();
    }
  });
});
