// Loaded with NODE_OPTIONS=--import into a miner CLI and so, inherited, into its preflight
// children; in a preflight child only (SLOW_PREFLIGHT set), it stands in for a model whose
// preflight takes long before the real preflight runs:
//   SLOW_PREFLIGHT=progress:MS  reports progress (the real line format) every 200 ms for MS ms;
//   SLOW_PREFLIGHT=stall:MS     reports nothing and uses no CPU for MS ms (a stuck child), then goes on.
import { basename } from "node:path";

const spec = process.env.SLOW_PREFLIGHT ?? "";
if (spec !== "" && basename(process.argv[1] ?? "") === "preflight-main.js") {
  const [mode, ms] = spec.split(":");
  const total = Number(ms);
  if (mode === "progress") {
    const { progressLine } = await import(
      new URL("../../dist/backends/llama/preflight-protocol.js", import.meta.url).href
    );
    const t0 = performance.now();
    for (let elapsed = 0; elapsed < total; elapsed = performance.now() - t0) {
      process.stdout.write(progressLine("test-delay", elapsed / total));
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } else if (mode === "stall") {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, total);
  }
}
