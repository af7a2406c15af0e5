// The GPU warm-up as far as a machine without a GPU can show it: its tiny Q4_0 model is valid (the
// CPU preflight decodes it), and on a runtime that cannot use a GPU the warm-up refuses, in the
// child's own words, without touching this process.
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { gpuWarmupProblem } from "../../src/backends/llama/gpu-warmup.js";
import { runPreflight } from "../../src/backends/llama/preflight.js";

describe("GPU warm-up", () => {
  it("writes its model once, valid on the CPU; on a CPU-only runtime it refuses with the reason", async () => {
    const dir = mkdtempSync(join(tmpdir(), "warmup-"));
    const problem = await gpuWarmupProblem(dir);
    expect(problem).toMatch(/warm-up decode on the GPU failed .*the GPU runtime did not start/);
    expect(problem).toContain("aitbc-native-miner gpu build");
    const model = join(dir, "gpu-warmup-tiny-q4_0.gguf");
    const bytes = readFileSync(model);
    expect(await runPreflight(model, 120_000)).toEqual({ ok: true });
    // Kept for later starts, byte for byte.
    await gpuWarmupProblem(dir);
    expect(readFileSync(model).equals(bytes)).toBe(true);
  });
});
