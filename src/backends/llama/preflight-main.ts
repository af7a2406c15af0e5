// Child-process entry point: load a GGUF on the CPU and evaluate one token. A malformed model can
// abort the whole process inside llama.cpp (GGML_ASSERT); running this first in a child keeps the
// miner alive. Prints its progress as JSON lines while it works (preflight-protocol.ts), then
// {"ok":true} on success; any crash or non-zero exit is a failure.
//   node preflight-main.js MODEL.gguf [--gpu]
// With --gpu it is the GPU warm-up instead (gpu-warmup.ts): the runtime `run` would start, every
// layer offloaded, a few tokens decoded: a binary whose kernels cannot run on this GPU aborts here,
// in the child, not in the miner.
import { getLlama, LlamaCompletion, LlamaLogLevel } from "node-llama-cpp";
import { OK_LINE, progressLine } from "./preflight-protocol.js";

const say = (phase: string, fraction: number | null = null) =>
  process.stdout.write(progressLine(phase, fraction));

async function main(path: string, gpu: boolean): Promise<void> {
  say("runtime");
  const llama = await getLlama({
    gpu: gpu ? "auto" : false,
    build: "never",
    maxThreads: 1,
    logLevel: LlamaLogLevel.error,
  });
  if (gpu && llama.gpu === false)
    throw new Error("the GPU runtime did not start (node-llama-cpp is on the CPU)");
  say("load", 0);
  let said = 0;
  let loaded = false;
  const model = await llama.loadModel({
    modelPath: path,
    gpuLayers: gpu ? "max" : 0,
    // node-llama-cpp calls this per tensor (the last call may come after the load resolved):
    // pass on whole percents only, and nothing once loaded.
    onLoadProgress: (p) => {
      if (!loaded && (p - said >= 0.01 || (p >= 1 && said < 1))) {
        said = p;
        say("load", p);
      }
    },
  });
  loaded = true;
  if (said < 1) say("load", 1);
  say("context");
  const context = await model.createContext({ contextSize: 256, sequences: 1, threads: 1 });
  const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
  say("evaluate");
  await completion.generateCompletion("a", { maxTokens: gpu ? 4 : 1, temperature: 0 });
  await context.dispose();
  await model.dispose();
  await llama.dispose();
  process.stdout.write(OK_LINE);
}

const path = process.argv[2];
if (!path) {
  process.stderr.write("usage: preflight-main.js MODEL.gguf [--gpu]\n");
  process.exit(2);
}
main(path, process.argv[3] === "--gpu").then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
