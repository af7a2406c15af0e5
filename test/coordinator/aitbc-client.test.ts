// The aitbc dialect against the local coordinator over real loopback HTTP.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CoordinatorError } from "../../src/coordinator/errors.js";
import type { CoordinatorClient } from "../../src/coordinator/types.js";
import { type LocalCoordinator, startLocalCoordinator } from "../../src/local-coordinator/index.js";
import { API_KEY, caps, client, completed, rejection } from "../support/coordinator.js";

describe("aitbc client ↔ local coordinator", () => {
  let coord: LocalCoordinator;
  const clients: CoordinatorClient[] = [];
  const mk = (over: Parameters<typeof client>[1] = {}) => {
    const c = client(coord.url, over);
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

  it("registers, heartbeats, polls, submits, fails and deregisters", async () => {
    const c = mk();
    await c.health();
    await c.register(caps(), 2);
    expect(coord.miners()).toMatchObject([{ minerId: "miner-1", dialect: "aitbc", concurrency: 2 }]);

    expect(await c.poll(0)).toBeNull(); // 204: nothing queued

    const a = coord.enqueue({ payload: { model: "tiny", prompt: "hi", max_tokens: 4 } });
    const b = coord.enqueue({ payload: { model: "tiny", prompt: "yo" }, constraints: { models: ["tiny"] } });
    await c.heartbeat({ inflight: 0, metadata: { gpu_util: 3 } });
    expect(coord.miners()[0]).toMatchObject({ reportedInflight: 0, metadata: { gpu_util: 3 } });

    const j1 = await c.poll(5);
    expect(j1).toEqual({
      jobId: a,
      payload: { model: "tiny", prompt: "hi", max_tokens: 4 },
      constraints: {},
    });
    expect(coord.job(a)).toMatchObject({ state: "RUNNING", minerId: "miner-1", attempts: 1 });
    const j2 = await c.poll(5);
    expect(j2?.jobId).toBe(b);

    const ack = await c.submit(completed(a, "out-a"));
    // What the result billed as sent: GPU seconds, no unit price configured on this client.
    expect(ack).toEqual({
      status: 200,
      coordinatorReceiptText: null,
      billed: { units: 0.25, unitType: "gpu_seconds", unitPrice: null },
    });
    const done = coord.job(a);
    expect(done).toMatchObject({ state: "COMPLETED", completedBy: "miner-1", submissions: 1 });
    expect(done?.result).toMatchObject({
      status: "completed",
      output: "out-a",
      model: "tiny",
      tokens_processed: 8,
      execution_time: 0.25,
      receipt: { job_id: a },
    });
    // Priced as upstream prices them: GPU seconds from the duration; tokens in their own fields.
    expect(done?.metrics).toMatchObject({
      duration_ms: 250,
      units: 0.25,
      unit_type: "gpu_seconds",
      prompt_tokens: 3,
      completion_tokens: 5,
      tokens: 8,
    });

    await c.fail(b, "backend_error", "model exploded");
    expect(coord.job(b)).toMatchObject({
      state: "FAILED",
      // The code also leads the message: upstream keeps only error_message.
      error: { code: "backend_error", message: "backend_error: model exploded" },
    });

    await c.deregister();
    expect(coord.miners()).toEqual([]);
    await c.deregister(); // already gone: still resolves
    expect(coord.stats().byRoute).toMatchObject({
      "GET /health": 1,
      "POST /v1/miners/register": 1,
      "POST /v1/miners/heartbeat": 1,
      "POST /v1/miners/poll": 3,
      "POST /v1/miners/{job_id}/result": 1,
      "POST /v1/miners/{job_id}/fail": 1,
      "DELETE /v1/miners/{miner_id}": 2,
    });
  });

  it("hands out jobs only while inflight < the registered concurrency", async () => {
    const c = mk();
    await c.register(caps(), 1);
    const a = coord.enqueue({ payload: { model: "tiny", prompt: "1" } });
    coord.enqueue({ payload: { model: "tiny", prompt: "2" } });
    expect((await c.poll(0))?.jobId).toBe(a);
    expect(await c.poll(0)).toBeNull(); // one RUNNING, concurrency 1
    await c.submit(completed(a));
    expect(await c.poll(0)).not.toBeNull();
  });

  it("does not hand a job to a miner whose capabilities miss its constraints", async () => {
    const c = mk();
    await c.register(caps(["tiny"]), 1);
    coord.enqueue({ payload: { model: "big", prompt: "x" }, constraints: { models: ["big"] } });
    coord.enqueue({ payload: { model: "tiny", prompt: "x" }, constraints: { min_vram_gb: 80 } });
    expect(await c.poll(0)).toBeNull();
  });

  it("completes a job exactly once: a repeated submission is a conflict and is counted", async () => {
    const c = mk();
    await c.register(caps(), 1);
    const id = coord.enqueue({ payload: { model: "tiny", prompt: "x" } });
    await c.poll(0);
    await c.submit(completed(id));
    const err = await rejection(c.submit(completed(id)));
    expect(err).toBeInstanceOf(CoordinatorError);
    expect(err).toMatchObject({ kind: "conflict", status: 409 });
    expect(coord.stats()).toMatchObject({ completions: 1, duplicateSubmissions: 1 });
    expect(coord.job(id)).toMatchObject({ submissions: 1, duplicateSubmissions: 1 });
  });

  it("maps an unknown job's result to not_found and an unknown miner's heartbeat to not_found", async () => {
    const c = mk();
    expect(await rejection(c.heartbeat({ inflight: 0, metadata: {} }))).toMatchObject({
      kind: "not_found",
      status: 404,
      retryable: false,
    });
    await c.register(caps(), 1);
    expect(await rejection(c.submit(completed("no-such-job")))).toMatchObject({
      kind: "not_found",
      status: 404,
    });
  });

  it("rejects a wrong API key as auth without ever echoing the key", async () => {
    const wrong = "sk-wrong-9d8c7b6a5f4e";
    const c = mk({ apiKey: wrong });
    const err = await rejection(c.register(caps(), 1));
    expect(err).toMatchObject({ kind: "auth", status: 401, retryable: false });
    expect(String((err as Error).message)).not.toContain(wrong);
    expect(coord.stats().authFailures).toBe(1);
  });

  it("accepts the API key as a bearer token and falls back to the session token", async () => {
    const bearer = mk({ apiKey: undefined, bearerToken: API_KEY, minerId: "miner-b" });
    await bearer.register(caps(), 1);
    await bearer.heartbeat({ inflight: 0, metadata: {} });
    // No API key at all: register is refused, as the coordinator requires one.
    const anon = mk({ apiKey: undefined, minerId: "miner-c" });
    expect(await rejection(anon.register(caps(), 1))).toMatchObject({ kind: "auth" });
  });

  it("requeues a job failed with shutting_down and a RUNNING job past its lease", async () => {
    await coord.close();
    let now = 1_000_000;
    coord = await startLocalCoordinator({ apiKeys: [API_KEY], leaseTimeoutMs: 5_000, now: () => now });
    const c = mk();
    await c.register(caps(), 2);
    const a = coord.enqueue({ payload: { model: "tiny", prompt: "a" } });
    const b = coord.enqueue({ payload: { model: "tiny", prompt: "b" } });
    await c.poll(0);
    await c.poll(0);
    await c.fail(a, "shutting_down", "SIGTERM");
    expect(coord.job(a)).toMatchObject({ state: "QUEUED", error: { code: "shutting_down" } });
    now += 6_000;
    expect(coord.sweepLeases()).toBe(1);
    expect(coord.job(b)).toMatchObject({ state: "QUEUED", attempts: 1 });
    expect(coord.stats()).toMatchObject({ requeued: 2, leaseExpired: 1 });
    // Failing a job that is no longer RUNNING is a conflict.
    expect(await rejection(c.fail(b, "x", "y"))).toMatchObject({ kind: "conflict" });
  });

  it("surfaces 429 with Retry-After as rate_limited with retryAfterMs", async () => {
    await coord.close();
    coord = await startLocalCoordinator({ apiKeys: [API_KEY], rateLimits: { poll: 2 } });
    const c = mk();
    await c.register(caps(), 1);
    await c.poll(0);
    await c.poll(0);
    const err = await rejection(c.poll(0));
    expect(err).toMatchObject({ kind: "rate_limited", status: 429, retryable: true });
    const ms = (err as CoordinatorError).retryAfterMs;
    expect(ms).not.toBeNull();
    expect(ms).toBeGreaterThan(0);
    expect(ms).toBeLessThanOrEqual(60_000);
    expect(coord.stats().rateLimited).toBe(1);
  });

  it("returns the coordinator's receipt as its raw JSON text", async () => {
    await coord.close();
    const raw =
      '{"version":"1.0","units":1.0,"nonce":12345678901234567890123,"note":"caf\\u00e9","signature":{"alg":"Ed25519"}}';
    const seen: Record<string, unknown>[] = [];
    coord = await startLocalCoordinator({
      apiKeys: [API_KEY],
      signReceipt: (payload) => {
        seen.push(payload);
        return raw;
      },
      verifyReceipt: (r) => ({ ok: typeof r === "object" && r !== null && "signature" in r }),
    });
    const c = mk();
    await c.register(caps(), 1);
    const id = coord.enqueue({ payload: { model: "tiny", prompt: "x" } });
    await c.poll(0);
    const ack = await c.submit(completed(id));
    expect(ack.coordinatorReceiptText).toBe(raw);
    expect(seen[0]).toMatchObject({ job_id: id, miner_id: "miner-1", model: "tiny", units: 0.25 });
    expect(coord.job(id)?.receiptCheck).toEqual({ ok: true });
    expect(coord.stats().receipts).toEqual({ verified: 1, rejected: 0 });
  });

  it("encodes ids in paths; a bad id the coordinator handed over is still sent, fully encoded", async () => {
    const c = mk({ minerId: "miner:a@b" });
    await c.register(caps(), 1);
    await c.deregister();
    expect(coord.miners()).toEqual([]);
    const before = coord.stats().requests;
    for (const bad of ["", "x".repeat(2000)]) {
      expect(await rejection(c.fail(bad, "x", "y"))).toMatchObject({ kind: "client", retryable: false });
    }
    expect(coord.stats().requests).toBe(before);
    // Sent (this coordinator answers 400 or 404 for such ids): never a path step, never a raw slash.
    for (const bad of ["../../admin", "a/b", "id with space", ".."]) {
      const err = await rejection(c.fail(bad, "x", "y"));
      expect([400, 404]).toContain((err as { status: number | null }).status);
      expect((err as Error).message).toContain(
        `/v1/miners/${encodeURIComponent(bad).replace(/\./g, "%2E")}/fail`,
      );
    }
    expect(coord.stats().requests).toBe(before + 4);
  });
});
