// A real-shaped model without a download (slow: writes ~0.7 GB): the Llama-3.2-1B shape in Q4_0
// from the streaming generator loads in node-llama-cpp on the CPU as a `llama` model and every run
// reaches maxTokens, greedy or sampled (the end-of-generation row is zeroed). No timing asserted.
import { rmSync, statfsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  getLlama,
  type Llama,
  LlamaCompletion,
  type LlamaContext,
  LlamaLogLevel,
  type LlamaModel,
} from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { planModel, writeModel } from "../../src/backends/gguf/writer.js";
import { tempDir } from "../support/backends.js";

const OPTS = { shape: "llama-3.2-1b", type: "q4_0" } as const;
const need = planModel(OPTS).totalBytes;
const free = (() => {
  const s = statfsSync(tmpdir());
  return s.bavail * s.bsize;
})();
const MAX_TOKENS = 8;
// 2 busy cores: writing, loading (with the CPU repack of Q4_0) and decoding can take minutes.
const SLOW = 10 * 60_000;

describe.skipIf(free < need * 2)("the Llama-3.2-1B shape, Q4_0, on the CPU", () => {
  let dir = "";
  let llama: Llama | undefined;
  let model: LlamaModel | undefined;
  let context: LlamaContext | undefined;

  beforeAll(async () => {
    dir = tempDir("real-shape-");
    const path = join(dir, "llama-3.2-1b-q4_0.gguf");
    const r = await writeModel(path, OPTS);
    expect(r.bytes).toBe(need);
    llama = await getLlama({ gpu: false, build: "never", maxThreads: 1, logLevel: LlamaLogLevel.error });
    model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
    context = await model.createContext({ contextSize: 256, threads: 1 });
  }, SLOW);

  afterAll(async () => {
    await context?.dispose();
    await model?.dispose();
    await llama?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, SLOW);

  it("loads as a llama model with the real dimensions", () => {
    const m = model!;
    expect(m.fileInfo.metadata.general.architecture).toBe("llama");
    expect(m.trainContextSize).toBe(131072);
    expect(m.fileInsights.totalLayers).toBe(17); // 16 blocks + the output layer
    expect(m.tokens.eos).toBe(2);
  });

  it(
    "gives the end-of-generation token no chance, even sampling the whole vocabulary at temperature 1",
    async () => {
      const m = model!;
      const seq = context!.getSequence();
      try {
        const input = [m.tokens.bos!, ...m.tokenize("Once upon a time", false)];
        const sampling = { temperature: 1, topK: 0, topP: 1, minP: 0, seed: 1 };
        let steps = 0;
        for await (const out of seq.evaluateWithMetadata(input, { probabilities: true }, sampling)) {
          expect(out.probabilities.size).toBe(128256);
          // Measured ~1e-21: its logit is 0 while the others spread with a deviation of ~10.
          expect(out.probabilities.get(m.tokens.eos!) ?? 0).toBeLessThan(1e-12);
          if (++steps === 4) break;
        }
        expect(steps).toBe(4);
      } finally {
        seq.dispose();
      }
    },
    SLOW,
  );

  it(
    `every run generates ${MAX_TOKENS} tokens and stops at maxTokens, greedy or sampled`,
    async () => {
      const seq = context!.getSequence();
      const completion = new LlamaCompletion({ contextSequence: seq });
      try {
        const runs = [
          { prompt: "The quick brown fox", temperature: 0 },
          { prompt: "Once upon a time", temperature: 1, seed: 42 },
          { prompt: "hello", temperature: 1.5, topP: 1, seed: 7 },
        ];
        for (const { prompt, ...sampling } of runs) {
          let tokens = 0;
          const r = await completion.generateCompletionWithMeta(prompt, {
            maxTokens: MAX_TOKENS,
            ...sampling,
            onToken: (t) => {
              tokens += t.length;
            },
          });
          expect([prompt, r.metadata.stopReason, tokens]).toEqual([prompt, "maxTokens", MAX_TOKENS]);
          expect(r.response).toMatch(/^[\x20-\x7e]+$/);
          await seq.clearHistory();
        }
      } finally {
        completion.dispose({ disposeSequence: true });
      }
    },
    SLOW,
  );
});
