// Child process for broken-model.test.ts: a llama backend over a directory holding the tiny model
// plus broken ones. Runs against the compiled dist/ (built by global setup). Prints one JSON line.
//   node broken-model-child.mjs DIR PREFLIGHT(true|false) MODEL...
import { createLlamaBackend } from "../../dist/backends/llama/index.js";
import { silentLogger } from "../../dist/log.js";

const [dir, preflight, ...models] = process.argv.slice(2);
const backend = createLlamaBackend({
  modelsDir: dir,
  threads: 1,
  concurrency: 1,
  gpu: false,
  log: silentLogger(),
  contextSize: 256,
  preflight: preflight === "true",
});
await backend.init();
const before = backend.listModels().map((m) => m.name);
const results = [];
for (const model of models) {
  try {
    const r = await backend.generate(
      { model, prompt: "hello", maxTokens: 4, temperature: 0, stop: [] },
      new AbortController().signal,
    );
    results.push({ model, ok: true, completionTokens: r.completionTokens });
  } catch (err) {
    results.push({ model, ok: false, code: err.code, message: err.message });
  }
}
const after = backend.listModels().map((m) => m.name);
await backend.close();
process.stdout.write(`${JSON.stringify({ before, after, results })}\n`);
