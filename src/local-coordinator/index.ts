// The local coordinator: an in-memory AITBC coordinator on loopback that speaks both dialects at
// once (aitbc /v1/miners/* and the tutorial's claim /v1/jobs/*). It is what `demo` and the
// `coordinator` command run, what the tests mine against, and what operators use for a smoke test
// of a miner before pointing it at a real coordinator. By default it follows the reference
// semantics of docs/protocols.md (auth, 204 when idle, concurrency, rate limits, leases, exactly-once
// completion; rules.ts); with `upstreamQuirks` it behaves as the real upstream coordinator does
// (docs/protocols.md#how-the-upstream-coordinator-behaves; upstream.ts). Optional persistence (state.ts) and seeded faults (faults.ts) make
// crash and flaky-network tests possible; main.ts runs it as a child process a test can SIGKILL.
// This file is its public API: import from here, not from the modules behind it.
import { LocalCoordinatorServer } from "./server.js";
import type { LocalCoordinator, LocalCoordinatorOptions } from "./types.js";

export type { FaultOptions } from "./faults.js";
export type { RateLimits } from "./rate-limit.js";
export type { JobState, LocalJob, LocalMiner, NewJob, ReceiptCheck } from "./state.js";
export type * from "./types.js";

/** Start a local coordinator on loopback; resolves once it listens. */
export async function startLocalCoordinator(opts: LocalCoordinatorOptions = {}): Promise<LocalCoordinator> {
  const c = new LocalCoordinatorServer(opts);
  await c.listen();
  return c;
}
