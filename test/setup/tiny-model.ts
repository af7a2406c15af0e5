// Global-setup step: generate the tiny test model into test/.fixtures/models/tiny.gguf.
// Deterministic and cached: ensureTinyModel reuses the file while its params sidecar matches.
// Only tiny.gguf goes into this directory: suites advertise every GGUF found there.
import { join } from "node:path";
import { ensureTinyModel } from "../../src/backends/tiny-gguf.js";

export const tinyModelsDir = (root: string) => join(root, "test", ".fixtures", "models");

export default async function setup(root: string): Promise<void> {
  await ensureTinyModel(tinyModelsDir(root), { name: "tiny" });
}
