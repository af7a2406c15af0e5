// The final word on a GPU runtime (issue: never a CPU miner posing as a GPU one): before the miner
// registers, a child process starts node-llama-cpp as `run` does, offloads every layer of a tiny
// generated Q4_0 model and decodes a few tokens. A CUDA binary with no kernels for this GPU (or a
// broken driver) aborts that child, not the miner, and the miner refuses to mine with the reason.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { writeModel } from "../gguf/writer.js";
import { runPreflight } from "./preflight.js";

/** A generous limit: CUDA initialisation plus a cold JIT of PTX can take a while on first use. */
const WARMUP_TIMEOUT_MS = 180_000;

/** Null when the decode ran on the GPU; else why not, in the child's own words. */
export async function gpuWarmupProblem(
  cacheDir: string,
  timeoutMs = WARMUP_TIMEOUT_MS,
): Promise<string | null> {
  const model = join(cacheDir, "gpu-warmup-tiny-q4_0.gguf");
  // Deterministic bytes (seeded): written once, kept for later starts.
  if (!existsSync(model)) await writeModel(model, { shape: "tiny", type: "q4_0", name: "gpu-warmup" });
  const r = await runPreflight(model, timeoutMs, undefined, { gpu: true });
  if (r.ok) return null;
  return `a warm-up decode on the GPU failed (${r.reason.replace(/^preflight load /, "")}): the runtime loads but cannot compute on this GPU. Run aitbc-native-miner doctor; on an H100/H200 with a 580 driver build a backend for it: aitbc-native-miner gpu build`;
}
