// The local coordinator's poll limit as upstream counts it: per client IP and route, in a sliding
// window of arrivals, so two miners on one host share it (in upstream mode), while the reference
// coordinator counts per miner. A 429 says when the oldest arrival leaves the window.
import { fetch } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { startLocalCoordinator } from "../../src/local-coordinator/index.js";
import { API_KEY, caps } from "../support/coordinator.js";

let coord: LocalCoordinator | null = null;
let tick = 0;
afterEach(async () => {
  await coord?.close();
  coord = null;
});

async function start(upstreamQuirks: boolean): Promise<LocalCoordinator> {
  tick = 0;
  coord = await startLocalCoordinator({
    upstreamQuirks,
    apiKeys: [API_KEY],
    rateLimits: { poll: 3, windowMs: 5000 },
    tick: () => tick,
  });
  return coord;
}

async function call(c: LocalCoordinator, path: string, miner: string, body: unknown) {
  const r = await fetch(`${c.url}${path}`, {
    method: "POST",
    headers: { "x-api-key": API_KEY, "x-miner-id": miner, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  await r.text();
  return { status: r.status, retryAfter: r.headers.get("retry-after") };
}

const register = (c: LocalCoordinator, miner: string) =>
  call(c, "/v1/miners/register", miner, { capabilities: caps(), concurrency: 1 });
const poll = (c: LocalCoordinator, miner: string) =>
  call(c, "/v1/miners/poll", miner, { max_wait_seconds: 0 });

describe("poll limit per client", () => {
  it("upstream mode: two miners behind one IP share one sliding window of arrivals", async () => {
    const c = await start(true);
    for (const m of ["gpu0", "gpu1"]) expect((await register(c, m)).status).toBe(200);
    tick = 0;
    expect((await poll(c, "gpu0")).status).toBe(204);
    tick = 1000;
    expect((await poll(c, "gpu0")).status).toBe(204);
    tick = 2000;
    expect((await poll(c, "gpu1")).status).toBe(204);
    // The third arrival filled the IP's window: the other miner is refused too.
    tick = 2500;
    const refused = await poll(c, "gpu1");
    expect(refused).toEqual({ status: 429, retryAfter: "3" }); // the arrival at 0 leaves at 5000
    // Sliding, not fixed: at 5000 one arrival has left, so exactly one more fits.
    tick = 5000;
    expect((await poll(c, "gpu1")).status).toBe(204);
    expect((await poll(c, "gpu0")).status).toBe(429);
    expect(c.stats().rateLimited).toBe(2);
  });

  it("reference mode: each miner has its own window", async () => {
    const c = await start(false);
    for (const m of ["gpu0", "gpu1"]) expect((await register(c, m)).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await poll(c, "gpu0")).status).toBe(204);
    expect((await poll(c, "gpu0")).status).toBe(429);
    expect((await poll(c, "gpu1")).status).toBe(204);
  });
});
