// Cancellation and the hand-over that fails on the coordinator's side, at the protocol level: the
// local coordinator's client route `POST /v1/jobs/{id}/cancel` and job view `GET /v1/jobs/{id}`
// (both modes), what each dialect's client learns from them (`jobsNoLongerOurs`), upstream's 500
// on a poll whose job holds a lone surrogate (the job stays RUNNING for the miner), and the
// `serverErrorAfterCommit` fault that does the same for any hand-over.
import { afterEach, describe, expect, it } from "vitest";
import { CoordinatorError } from "../../src/coordinator/errors.js";
import type { CoordinatorClient } from "../../src/coordinator/types.js";
import { faultOptionsSchema } from "../../src/local-coordinator/faults.js";
import {
  type LocalCoordinator,
  type LocalCoordinatorOptions,
  startLocalCoordinator,
} from "../../src/local-coordinator/index.js";
import { API_KEY, caps, client, completed, rawServer, rejection } from "../support/coordinator.js";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function local(o: LocalCoordinatorOptions = {}): Promise<LocalCoordinator> {
  const coord = await startLocalCoordinator({ apiKeys: [API_KEY], rateLimits: { poll: 100_000 }, ...o });
  cleanups.push(() => coord.close());
  return coord;
}

function mk(url: string, minerId = "miner-1", protocol: "aitbc" | "claim" = "aitbc"): CoordinatorClient {
  const c = client(url, { minerId, protocol });
  cleanups.push(() => c.close());
  return c;
}

function cancel(url: string, jobId: string, key: string | null = API_KEY): Promise<Response> {
  return fetch(`${url}/v1/jobs/${encodeURIComponent(jobId)}/cancel`, {
    method: "POST",
    headers: key ? { "x-api-key": key } : {},
  });
}

describe.each([
  ["reference", false],
  ["upstream", true],
])("cancelling a job on the local coordinator (%s mode)", (_, upstreamQuirks) => {
  it("a RUNNING job becomes CANCELED, drops out of its miner's listing, and both dialects see it is no longer theirs", async () => {
    const coord = await local({ upstreamQuirks });
    const aitbc = mk(coord.url);
    await aitbc.register(caps(), 4);
    const [a, b] = [0, 1].map((i) => coord.enqueue({ payload: { model: "tiny", prompt: `p${i}` } }));
    expect((await aitbc.poll(0))?.jobId).toBe(a);
    expect((await aitbc.poll(0))?.jobId).toBe(b);
    expect(await aitbc.jobsNoLongerOurs!([a!, b!])).toEqual([]);

    expect((await cancel(coord.url, a!, null)).status).toBe(401);
    const res = await cancel(coord.url, a!);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ job_id: a, state: "CANCELED", assigned_miner_id: null });
    expect(coord.job(a!)).toMatchObject({ state: "CANCELED", minerId: null });
    expect(coord.stats().jobs).toMatchObject({ cancelled: 1, running: 1 });
    expect(await aitbc.runningJobs!()).toEqual([b]);
    expect(await aitbc.jobsNoLongerOurs!([a!, b!])).toEqual([a]);

    // The claim dialect reads each job's view.
    const view = await fetch(`${coord.url}/v1/jobs/${a}`);
    expect(await view.json()).toMatchObject({ job_id: a, state: "CANCELED", assigned_miner_id: null });
    const claim = mk(coord.url, "miner-1", "claim");
    expect(await claim.jobsNoLongerOurs!([a!, b!])).toEqual([a]);
    // Another miner's job is not this one's.
    expect(await mk(coord.url, "miner-2", "claim").jobsNoLongerOurs!([b!])).toEqual([b]);

    // A second cancel leaves it as it is.
    expect(await (await cancel(coord.url, a!)).json()).toMatchObject({ state: "CANCELED" });
    expect(coord.cancel(a!)).toBe(false);
  });

  it(`a result for a cancelled job: ${upstreamQuirks ? "completes it again and bills it (upstream)" : "409 (reference)"}`, async () => {
    const coord = await local({ upstreamQuirks });
    const c = mk(coord.url);
    await c.register(caps(), 1);
    const id = coord.enqueue({ payload: { model: "tiny", prompt: "p" } });
    await c.poll(0);
    expect(coord.cancel(id)).toBe(true);
    if (upstreamQuirks) {
      await c.submit(completed(id));
      expect(coord.job(id)?.state).toBe("COMPLETED");
    } else {
      const err = await rejection(c.submit(completed(id)));
      expect(err).toBeInstanceOf(CoordinatorError);
      expect((err as CoordinatorError).status).toBe(409);
      expect(coord.job(id)?.state).toBe("CANCELED");
    }
  });
});

describe("a claim-dialect coordinator that cannot say", () => {
  it("no job view (404 everywhere): null, so nothing is stopped; a 5xx is an error", async () => {
    let status = 404;
    const raw = await rawServer((_req, res) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify({ detail: "Not Found" }));
    });
    cleanups.push(() => raw.close());
    const c = mk(raw.url, "miner-1", "claim");
    expect(await c.jobsNoLongerOurs!(["j1", "j2"])).toBeNull();
    status = 503;
    expect(await rejection(c.jobsNoLongerOurs!(["j1"]))).toBeInstanceOf(CoordinatorError);
  });
});

describe("a hand-over that fails on the coordinator's side", () => {
  it("upstream mode: a lone surrogate in the payload makes the poll a 500, and the job stays RUNNING for that miner", async () => {
    const coord = await local({ upstreamQuirks: true });
    const c = mk(coord.url);
    await c.register(caps(), 2);
    const bad = coord.enqueue({ payload: { model: "tiny", prompt: "broken \ud800 text" } });
    const err = await rejection(c.poll(0));
    expect(err).toBeInstanceOf(CoordinatorError);
    expect((err as CoordinatorError).kind).toBe("server");
    expect(coord.job(bad)).toMatchObject({ state: "RUNNING", minerId: "miner-1" });
    expect(await c.runningJobs!()).toEqual([bad]);
    // A paired surrogate (an emoji) is fine.
    const ok = coord.enqueue({ payload: { model: "tiny", prompt: "fine \ud83d\ude00" } });
    expect((await c.poll(0))?.jobId).toBe(ok);
  });

  it("reference mode serialises it; the serverErrorAfterCommit fault (limit 1) answers one hand-over with 500 after making it", async () => {
    const plain = await local();
    const p = mk(plain.url);
    await p.register(caps(), 1);
    const surrogate = plain.enqueue({ payload: { model: "tiny", prompt: "broken \ud800 text" } });
    expect((await p.poll(0))?.jobId).toBe(surrogate);

    const coord = await local({ faults: { serverErrorAfterCommitRate: 1, routes: ["poll"], limit: 1 } });
    const c = mk(coord.url);
    await c.register(caps(), 2);
    expect(await c.poll(0)).toBeNull(); // nothing handed over: no fault
    const first = coord.enqueue({ payload: { model: "tiny", prompt: "a" } });
    const second = coord.enqueue({ payload: { model: "tiny", prompt: "b" } });
    expect(await rejection(c.poll(0))).toBeInstanceOf(CoordinatorError);
    expect(coord.job(first)).toMatchObject({ state: "RUNNING", minerId: "miner-1" });
    expect((await c.poll(0))?.jobId).toBe(second);
    expect(coord.stats().faults.serverErrorAfterCommit).toBe(1);
  });
});

describe("fault options from a command line", () => {
  it("takes the new kinds and a limit; refuses unknown keys and rates outside [0, 1]", () => {
    const ok = { serverErrorAfterCommitRate: 1, routes: ["poll"], limit: 1, seed: 3 };
    expect(faultOptionsSchema.parse(ok)).toEqual(ok);
    expect(faultOptionsSchema.safeParse({ serverErrorRate: 1.5 }).success).toBe(false);
    expect(faultOptionsSchema.safeParse({ serverErorRate: 0.1 }).success).toBe(false);
    expect(faultOptionsSchema.safeParse({ limit: -1 }).success).toBe(false);
  });
});
