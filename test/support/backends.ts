// Shared bits of the backend suites: the tiny model made by global setup, temp dirs, requests.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Backend, InferenceRequest, InferenceResult } from "../../src/backends/types.js";

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const fixturesModels = join(repoRoot, "test", ".fixtures", "models");
export const tinyPath = join(fixturesModels, "tiny.gguf");

export const tempDir = (prefix = "backends-") => mkdtempSync(join(tmpdir(), prefix));

export function req(over: Partial<InferenceRequest> = {}): InferenceRequest {
  return { model: "tiny", prompt: "The quick brown fox", maxTokens: 16, temperature: 0, stop: [], ...over };
}

export const never = () => new AbortController().signal;

/**
 * A backend serving one model name whose generate is the test's own (a wedging one, a slow one, a
 * counting one); `answer` builds the usual one-token result.
 */
export function scriptedBackend(
  model: string,
  generate: (req: InferenceRequest, signal: AbortSignal) => Promise<InferenceResult>,
): Backend {
  return {
    name: "llama",
    async init() {},
    listModels: () => [{ name: model, sizeBytes: null, source: "test" }],
    hasModel: (n) => n === model,
    generate,
    async unloadAll() {},
    async close() {},
  };
}

export function answer(req: InferenceRequest, output = "ok", durationMs = 1): InferenceResult {
  return {
    output,
    model: req.model,
    backend: "llama",
    promptTokens: 1,
    completionTokens: 1,
    durationMs,
    stopReason: "maxTokens",
  };
}
