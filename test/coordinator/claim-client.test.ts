// The claim (tutorial) dialect against the local coordinator over real loopback HTTP.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { CoordinatorClient } from "../../src/coordinator/types.js";
import { type LocalCoordinator, startLocalCoordinator } from "../../src/local-coordinator/index.js";
import { API_KEY, caps, client, completed, rawServer, rejection } from "../support/coordinator.js";

describe("claim client ↔ local coordinator", () => {
  let coord: LocalCoordinator;
  const clients: CoordinatorClient[] = [];
  const mk = (minerId = "claimer-1") => {
    const c = client(coord.url, { protocol: "claim", minerId });
    clients.push(c);
    return c;
  };

  beforeEach(async () => {
    coord = await startLocalCoordinator({ apiKeys: [API_KEY] });
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close();
    await coord.close();
  });

  it("registers, lists, claims and completes a job", async () => {
    const c = mk();
    await c.health();
    await c.register(caps(["tiny", "llama3.2"]), 1);
    expect(coord.miners()).toMatchObject([
      { minerId: "claimer-1", dialect: "claim", capabilities: ["tiny", "llama3.2"] },
    ]);
    expect(await c.poll(0)).toBeNull(); // 204

    const id = coord.enqueue({ payload: { model: "tiny", prompt: "hello", max_tokens: 3 } });
    const job = await c.poll(0);
    expect(job).toEqual({
      jobId: id,
      payload: { model: "tiny", prompt: "hello", max_tokens: 3 },
      constraints: {},
    });
    expect(coord.job(id)).toMatchObject({ state: "RUNNING", minerId: "claimer-1" });

    const result = completed(id, "the output");
    const ack = await c.submit(result);
    expect(ack.status).toBe(200);
    const done = coord.job(id);
    expect(done).toMatchObject({ state: "COMPLETED", completedBy: "claimer-1" });
    expect(done?.result).toEqual({
      output: "the output",
      completed_at: new Date(result.completedAt).toISOString(),
    });
    expect(done?.minerReceipt).toMatchObject({ job_id: id });

    // A repeat is a conflict; counted once.
    expect(await rejection(c.submit(result))).toMatchObject({ kind: "conflict" });
    expect(coord.stats().duplicateSubmissions).toBe(1);
  });

  it("returns null when another miner wins the claim (409)", async () => {
    const a = mk("claimer-a");
    const b = mk("claimer-b");
    const id = coord.enqueue({ payload: { model: "tiny", prompt: "race" } });
    // b lists the job, a claims it first (through a poll), then b's claim meets 409.
    const listed = await fetch(`${coord.url}/v1/jobs/available?miner_id=claimer-b`);
    expect(listed.status).toBe(200);
    expect((await a.poll(0))?.jobId).toBe(id);
    const claimed = await fetch(`${coord.url}/v1/jobs/${id}/claim`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ miner_id: "claimer-b" }),
    });
    expect(claimed.status).toBe(409);
    expect(await b.poll(0)).toBeNull(); // nothing QUEUED any more
  });

  it("claims through a coordinator that loses the race between listing and claiming", async () => {
    const seen: string[] = [];
    const srv = await rawServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      if (req.url?.startsWith("/v1/jobs/available")) {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ job_id: "job/1", prompt: "p", model: "tiny" }));
      } else {
        res.writeHead(409).end();
      }
    });
    const c = client(srv.url, { protocol: "claim", minerId: "m-1" });
    try {
      // A job id with "/" is refused before any claim is sent.
      expect(await rejection(c.poll(0))).toMatchObject({ kind: "bad_response" });
      expect(seen).toEqual(["GET /v1/jobs/available?miner_id=m-1"]);
    } finally {
      await c.close();
      await srv.close();
    }
  });

  it("treats 204, 404, an empty body, null and {} from the listing as no job", async () => {
    const answers: Array<[number, string]> = [
      [204, ""],
      [404, '{"detail":"none"}'],
      [200, ""],
      [200, "null"],
      [200, "{}"],
    ];
    let i = 0;
    const srv = await rawServer((_req, res) => {
      const [status, body] = answers[i++] ?? [500, ""];
      res.writeHead(status, { "content-type": "application/json" });
      res.end(body);
    });
    const c = client(srv.url, { protocol: "claim" });
    try {
      for (let k = 0; k < answers.length; k++) expect(await c.poll(0)).toBeNull();
    } finally {
      await c.close();
      await srv.close();
    }
  });

  it("has no heartbeat, fail or deregister calls: they resolve without a request", async () => {
    const c = mk();
    const before = coord.stats().requests;
    await c.heartbeat({ inflight: 1, metadata: {} });
    await c.fail("job-1", "backend_error", "x");
    await c.deregister();
    expect(coord.stats().requests).toBe(before);
  });

  it("requires the API key on the claim dialect only when configured", async () => {
    await coord.close();
    coord = await startLocalCoordinator({ apiKeys: [API_KEY], claimRequiresKey: true });
    const anon = client(coord.url, { protocol: "claim", apiKey: undefined });
    clients.push(anon);
    expect(await rejection(anon.register(caps(), 1))).toMatchObject({ kind: "auth" });
    const keyed = mk();
    await keyed.register(caps(), 1);
  });
});
