// Shared bits of the backend suites: the tiny model made by global setup, temp dirs, requests.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { InferenceRequest } from "../../src/backends/types.js";

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const fixturesModels = join(repoRoot, "test", ".fixtures", "models");
export const tinyPath = join(fixturesModels, "tiny.gguf");

export const tempDir = (prefix = "backends-") => mkdtempSync(join(tmpdir(), prefix));

export function req(over: Partial<InferenceRequest> = {}): InferenceRequest {
  return { model: "tiny", prompt: "The quick brown fox", maxTokens: 16, temperature: 0, stop: [], ...over };
}

export const never = () => new AbortController().signal;
