// The jobs a coordinator runs for a miner (POST /v1/miners/{miner_id}/jobs?job_status=RUNNING, as
// upstream's routers/miner.py lists them): the aitbc client against the local coordinator in both
// modes, and against coordinators that have no such listing or answer it with an error.
import { afterEach, describe, expect, it } from "vitest";
import { CoordinatorError } from "../../src/coordinator/errors.js";
import type { CoordinatorClient } from "../../src/coordinator/types.js";
import { type LocalCoordinator, startLocalCoordinator } from "../../src/local-coordinator/index.js";
import { API_KEY, caps, client, completed, rawServer, rejection } from "../support/coordinator.js";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function local(upstreamQuirks: boolean): Promise<LocalCoordinator> {
  const coord = await startLocalCoordinator({
    apiKeys: [API_KEY],
    upstreamQuirks,
    rateLimits: { poll: 100_000 },
  });
  cleanups.push(() => coord.close());
  return coord;
}

function mk(url: string, minerId = "miner-1"): CoordinatorClient {
  const c = client(url, { minerId });
  cleanups.push(() => c.close());
  return c;
}

describe.each([
  ["reference", false],
  ["upstream", true],
])("the local coordinator lists a miner's jobs (%s mode)", (_, upstreamQuirks) => {
  it("RUNNING jobs of this miner only: not another miner's, not queued or finished ones", async () => {
    const coord = await local(upstreamQuirks);
    const mine = mk(coord.url);
    const other = mk(coord.url, "miner-2");
    await mine.register(caps(), 3);
    await other.register(caps(), 3);
    expect(await mine.runningJobs!()).toEqual([]);
    const ids = [0, 1, 2, 3, 4].map((i) => coord.enqueue({ payload: { model: "tiny", prompt: `p${i}` } }));
    const a = await mine.poll(0);
    const b = await mine.poll(0);
    const c = await other.poll(0);
    const d = await mine.poll(0);
    await mine.submit(completed(b!.jobId));
    await mine.fail(d!.jobId, "timeout", "too slow");
    expect([a, b, c, d].map((j) => j!.jobId)).toEqual(ids.slice(0, 4));
    expect(await mine.runningJobs!()).toEqual([a!.jobId]);
    expect(await other.runningJobs!()).toEqual([c!.jobId]);
  });

  it("answers upstream's shape, newest first, paged by limit and offset, behind the API key", async () => {
    const coord = await local(upstreamQuirks);
    const c = mk(coord.url);
    await c.register(caps(), 150);
    const ids: string[] = [];
    for (let i = 0; i < 130; i++) {
      ids.push(coord.enqueue({ payload: { model: "tiny", prompt: `p${i}` } }));
      await c.poll(0);
    }
    // The client reads every page (100 a page): all 130.
    expect((await c.runningJobs!())!.sort()).toEqual([...ids].sort());
    const page = await fetch(`${coord.url}/v1/miners/miner-1/jobs?job_status=running&limit=2&offset=1`, {
      method: "POST",
      headers: { "x-api-key": API_KEY },
    });
    expect(page.status).toBe(200);
    const body = (await page.json()) as { jobs: { job_id: string; state: string }[] };
    expect(body).toMatchObject({ total: 2, limit: 2, offset: 1, miner_id: "miner-1" });
    expect(body.jobs.map((j) => j.state)).toEqual(["RUNNING", "RUNNING"]);
    expect(body.jobs[0]).toMatchObject({ assigned_miner_id: "miner-1" });
    const anonymous = await fetch(`${coord.url}/v1/miners/miner-1/jobs`, { method: "POST" });
    expect(anonymous.status).toBe(401);
    expect(coord.stats().byRoute["POST /v1/miners/{miner_id}/jobs"]).toBeGreaterThanOrEqual(3);
  });
});

describe("a coordinator without the listing, or one that cannot answer it", () => {
  const serve = async (status: number, body: unknown) => {
    const s = await rawServer((_req, res) => {
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    });
    cleanups.push(() => s.close());
    return mk(s.url);
  };

  it.each([
    ["404 (no such route)", 404, { detail: "Not Found" }],
    ["405 (method not allowed)", 405, { detail: "Method Not Allowed" }],
    [
      "upstream's catch-all: an empty list that admits an error",
      200,
      { jobs: [], error: "Failed to list jobs" },
    ],
    ["something else answering 200", 200, { status: "ok" }],
    ["a listing whose jobs carry no state", 200, { jobs: [{ job_id: "j1" }] }],
  ])("%s: null, never 'holds nothing'", async (_, status, body) => {
    const c = await serve(status, body);
    expect(await c.runningJobs!()).toBeNull();
  });

  it("a coordinator that ignores the filter: only RUNNING jobs assigned to us count", async () => {
    const c = await serve(200, {
      jobs: [
        { job_id: "done", state: "COMPLETED", assigned_miner_id: "miner-1" },
        { job_id: "ours", state: "RUNNING", assigned_miner_id: "miner-1" },
        { job_id: "theirs", state: "RUNNING", assigned_miner_id: "miner-2" },
      ],
    });
    expect(await c.runningJobs!()).toEqual(["ours"]);
  });

  it("a 5xx is an error the caller may retry", async () => {
    const c = await serve(503, { detail: "busy" });
    const err = await rejection(c.runningJobs!());
    expect(err).toBeInstanceOf(CoordinatorError);
    expect((err as CoordinatorError).retryable).toBe(true);
  });

  it("the claim dialect has no listing", () => {
    const c = client("http://127.0.0.1:9", { protocol: "claim" });
    cleanups.push(() => c.close());
    expect(c.runningJobs).toBeUndefined();
  });
});
