// A miner alone in its process (zero-cost backend, durable outbox, signed receipts) for
// bench/footprint.mjs: reports its RSS when asked over IPC.
//   node bench/footprint-child.mjs URL COORDINATOR_PUBLIC_KEY_HEX
import { buildMiner, zeroBackend } from "./lib.mjs";

const [url, publicKeyHex] = process.argv.slice(2);
const m = buildMiner({
  url,
  backend: zeroBackend(),
  coordinatorKey: { publicKeyHex },
  concurrency: 4,
  // Idle polling capped at 1 s so the 1,000 jobs are found promptly once queued.
  settings: { pollsPerWindow: Number.POSITIVE_INFINITY, idlePollIntervalMs: 10, longPollSeconds: 0 },
});
process.on("message", async (msg) => {
  if (msg === "rss")
    process.send({ rss: process.memoryUsage().rss, heapUsed: process.memoryUsage().heapUsed });
  if (msg === "stop") {
    await m.stop();
    process.exit(0);
  }
});
process.send({ ready: true });
