// Broken GGUFs can abort the whole process inside llama.cpp (GGML_ASSERT, docs/models.md), so these
// scenarios run in a child process; the backend's own preflight must keep that child alive too.
import { execFile } from "node:child_process";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { preflightModel } from "../../src/backends/llama/preflight.js";
import { repoRoot, tempDir, tinyPath } from "../support/backends.js";

const run = promisify(execFile);
const child = join(repoRoot, "test", "backends", "broken-model-child.mjs");

interface ChildReport {
  before: string[];
  after: string[];
  results: { model: string; ok: boolean; code?: string; message?: string; completionTokens?: number }[];
}

async function runChild(dir: string, preflight: boolean, models: string[]) {
  const { stdout } = await run(process.execPath, [child, dir, String(preflight), ...models], {
    timeout: 120_000,
  });
  return JSON.parse(stdout.trim().split("\n").at(-1)!) as ChildReport;
}

let dir: string;
beforeAll(() => {
  dir = tempDir("broken-");
  copyFileSync(tinyPath, join(dir, "tiny.gguf"));
  // A valid GGUF that lacks llama.feed_forward_length: llama.cpp asserts while loading it.
  const noFf = readFileSync(tinyPath);
  const at = noFf.indexOf("llama.feed_forward_length");
  expect(at).toBeGreaterThan(0);
  noFf.write("llama.feed_forward_lengtX", at);
  writeFileSync(join(dir, "noff.gguf"), noFf);
  // A header and no tensor data: refused by the header check, never loaded.
  writeFileSync(join(dir, "truncated.gguf"), readFileSync(tinyPath).subarray(0, 5000));
  // A tensor of a ggml type nobody knows: the header check cannot size it, llama.cpp rejects it.
  const badType = readFileSync(tinyPath);
  const name = "token_embd.weight";
  const info = badType.indexOf(name);
  expect(info).toBeGreaterThan(0);
  const typeAt = info + name.length + 4 + 2 * 8; // after n_dims (u32) and two u64 dims
  expect(badType.readUInt32LE(typeAt)).toBe(0); // F32
  badType.writeUInt32LE(200, typeAt);
  writeFileSync(join(dir, "badtype.gguf"), badType);
});

describe("broken model files", () => {
  it("the preflight child reports an asserting model as a crash, not a hang", async () => {
    const reason = await preflightModel(join(dir, "noff.gguf"));
    expect(reason).toMatch(/crashed \(SIGABRT\).*GGML_ASSERT/);
    expect(await preflightModel(tinyPath)).toBeNull();
  });

  it("fails jobs for broken models with model_load_failed and keeps serving the good one", async () => {
    const report = await runChild(dir, true, ["noff", "truncated", "tiny", "noff"]);
    // The truncated file is never advertised (the header check refuses it before any load).
    expect(report.before.sort()).toEqual(["badtype", "noff", "tiny"]);
    expect(report.results).toEqual([
      expect.objectContaining({ model: "noff", ok: false, code: "model_load_failed" }),
      expect.objectContaining({
        model: "truncated",
        ok: false,
        code: "model_not_found",
        message: expect.stringMatching(/truncated\.gguf: truncated: /),
      }),
      { model: "tiny", ok: true, completionTokens: 4 },
      expect.objectContaining({ model: "noff", ok: false, code: "model_load_failed" }),
    ]);
    // A model that failed to load is no longer advertised.
    expect(report.after.sort()).toEqual(["badtype", "tiny"]);
  });

  it("without the preflight, a file llama.cpp rejects cleanly still fails only its job", async () => {
    const report = await runChild(dir, false, ["badtype", "tiny"]);
    expect(report.results).toEqual([
      expect.objectContaining({ model: "badtype", ok: false, code: "model_load_failed" }),
      { model: "tiny", ok: true, completionTokens: 4 },
    ]);
  });
});
