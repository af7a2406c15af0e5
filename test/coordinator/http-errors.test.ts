// The HTTP layer against misbehaving coordinators (plain node:http servers): every failure
// surfaces as the right CoordinatorError kind, and no message ever carries the API key.
import { createServer } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { CoordinatorError } from "../../src/coordinator/errors.js";
import { parseRetryAfter } from "../../src/coordinator/http.js";
import type { CoordinatorClient } from "../../src/coordinator/types.js";
import { API_KEY, caps, client, completed, rawServer, rejection } from "../support/coordinator.js";

type Handler = Parameters<typeof rawServer>[0];

describe("HTTP failure mapping", () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const f of cleanups.splice(0).reverse()) await f();
  });

  async function against(
    handler: Handler,
    over: Parameters<typeof client>[1] = {},
  ): Promise<CoordinatorClient> {
    const srv = await rawServer(handler);
    cleanups.push(() => srv.close());
    const c = client(srv.url, over);
    cleanups.push(() => c.close());
    return c;
  }

  function expectNoKey(err: unknown): void {
    expect(err).toBeInstanceOf(CoordinatorError);
    expect(String((err as Error).message)).not.toContain(API_KEY);
    expect(String(err)).not.toContain(API_KEY);
    expect(JSON.stringify(err)).not.toContain(API_KEY);
  }

  it("maps statuses to kinds", async () => {
    const cases: Array<[number, string, boolean]> = [
      [400, "client", false],
      [401, "auth", false],
      [403, "auth", false],
      [404, "not_found", false],
      [408, "client", true],
      [409, "conflict", false],
      [422, "client", false],
      [500, "server", true],
      [502, "server", true],
      [503, "server", true],
    ];
    let status = 0;
    const c = await against((_req, res) => res.writeHead(status).end());
    for (const [s, kind, retryable] of cases) {
      status = s;
      const err = await rejection(c.heartbeat({ inflight: 0, metadata: {} }));
      expect(err, `HTTP ${s}`).toMatchObject({ kind, status: s, retryable });
      expect((err as Error).message).toContain("/v1/miners/heartbeat");
      expect((err as Error).message).toContain(String(s));
    }
  });

  it("parses Retry-After as seconds or as an HTTP date", async () => {
    let header = "7";
    const c = await against((_req, res) => res.writeHead(429, { "retry-after": header }).end());
    expect(await rejection(c.poll(0))).toMatchObject({ kind: "rate_limited", retryAfterMs: 7000 });
    header = new Date(Date.now() + 30_000).toUTCString();
    const err = (await rejection(c.poll(0))) as CoordinatorError;
    expect(err.retryAfterMs).toBeGreaterThan(20_000);
    expect(err.retryAfterMs).toBeLessThanOrEqual(30_000);
    header = "soon";
    expect(await rejection(c.poll(0))).toMatchObject({ kind: "rate_limited", retryAfterMs: null });
    expect(parseRetryAfter(new Date(0).toUTCString())).toBe(0);
    expect(parseRetryAfter(undefined)).toBeNull();
  });

  it("times out a server that never answers", async () => {
    const c = await against(() => {}, { timeoutMs: 300 });
    const err = await rejection(c.poll(0));
    expect(err).toMatchObject({ kind: "timeout", retryable: true });
    expectNoKey(err);
  });

  it("times out a body dribbled one byte at a time (slowloris)", async () => {
    const c = await against(
      (_req, res) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.write("{");
        const t = setInterval(() => (res.destroyed ? clearInterval(t) : res.write(" ")), 50);
        res.on("close", () => clearInterval(t));
      },
      { timeoutMs: 400 },
    );
    const err = await rejection(c.poll(0));
    expect(err).toMatchObject({ kind: "timeout" });
    expect((err as Error).message).toContain("body");
  });

  it("a caller's abort cuts a poll still waiting for its answer, not one whose answer is arriving", async () => {
    const job = JSON.stringify({ job_id: "job-1", payload: { model: "m", prompt: "p" }, constraints: {} });
    let received = 0;
    let answerNow: () => void = () => {};
    const c = await against((_req, res) => {
      received++;
      answerNow = () => {
        // Headers first, the body well after: the abort lands in between (wide margins, so a
        // loaded CI host still sees the headers before the abort).
        res.writeHead(200, { "content-type": "application/json" });
        res.write(job.slice(0, 10));
        setTimeout(() => res.end(job.slice(10)), 600);
      };
    });
    const waiting = new AbortController();
    const held = c.poll(20, waiting.signal);
    await new Promise((r) => setTimeout(r, 50));
    waiting.abort();
    expect(await rejection(held)).toMatchObject({ kind: "aborted" });

    const arriving = new AbortController();
    const poll = c.poll(20, arriving.signal);
    while (received < 2) await new Promise((r) => setTimeout(r, 10));
    answerNow();
    await new Promise((r) => setTimeout(r, 250));
    arriving.abort();
    expect(await poll).toMatchObject({ jobId: "job-1" });

    const before = new AbortController();
    before.abort();
    expect(await rejection(c.poll(0, before.signal))).toMatchObject({ kind: "aborted" });
  });

  it("maps connection refused and reset to network", async () => {
    // A port that was free a moment ago: nothing listens there.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const { port } = probe.address() as { port: number };
    await new Promise<void>((r) => probe.close(() => r()));
    const refused = client(`http://127.0.0.1:${port}`);
    cleanups.push(() => refused.close());
    const err = await rejection(refused.register(caps(), 1));
    expect(err).toMatchObject({ kind: "network", retryable: true });
    expect((err as Error).message).toContain("ECONNREFUSED");
    expectNoKey(err);

    const reset = await against((req) => req.socket.destroy());
    expect(await rejection(reset.poll(0))).toMatchObject({ kind: "network" });
  });

  it("refuses an oversized body, declared or streamed, but names the job a poll handed over", async () => {
    let chunked = false;
    let jobFirst = true;
    const c = await against(
      (_req, res) => {
        const pad = "x".repeat(200_000);
        const big = jobFirst ? `{"job_id":"a-1","payload":"${pad}"}` : `{"payload":"${pad}","job_id":"a-1"}`;
        if (chunked) {
          res.writeHead(200, { "content-type": "application/json" });
          for (let i = 0; i < big.length; i += 500) res.write(big.slice(i, i + 500));
          res.end();
        } else {
          res.writeHead(200, {
            "content-type": "application/json",
            "content-length": Buffer.byteLength(big),
          });
          res.end(big);
        }
      },
      { maxBodyBytes: 1024 },
    );
    expect(await rejection(c.poll(0))).toMatchObject({
      name: "UnusableJobError",
      jobId: "a-1",
      failureCode: "payload_too_large",
    });
    chunked = true;
    const err = await rejection(c.poll(0));
    expect(err).toMatchObject({ jobId: "a-1", failureCode: "payload_too_large" });
    expect((err as Error).message).toContain("1024-byte limit");
    // The id after a payload longer than the kept head cannot be read: the usual bad_response.
    jobFirst = false;
    expect(await rejection(c.poll(0))).toMatchObject({ kind: "bad_response" });
    chunked = false;
    const declared = await rejection(c.poll(0));
    expect(declared).toMatchObject({ kind: "bad_response" });
    expect((declared as Error).message).toContain("exceeds the 1024-byte limit");
  });

  it("refuses malformed JSON and wrong shapes; a named job is failed back, not dropped", async () => {
    let body = "{not json";
    const c = await against((_req, res) =>
      res.writeHead(200, { "content-type": "application/json" }).end(body),
    );
    expect(await rejection(c.poll(0))).toMatchObject({ kind: "bad_response", status: 200 });
    body = '{"payload":{}}'; // no job_id
    expect(await rejection(c.poll(0))).toMatchObject({ kind: "bad_response" });
    body = '{"job_id":"../etc","payload":{}}';
    expect(await rejection(c.poll(0))).toMatchObject({ jobId: "../etc", failureCode: "invalid_job_id" });
    body = '{"job_id":"j-7","payload":{"prompt":"x"},"constraints":'; // cut short
    expect(await rejection(c.poll(0))).toMatchObject({ jobId: "j-7", failureCode: "invalid_payload" });
    body = '{"status":"ok","session_token":42}';
    expect(await rejection(c.register(caps(), 1))).toMatchObject({ kind: "bad_response" });
  });

  it("never puts the API key in an error, even when the server echoes it", async () => {
    const c = await against((req, res) => {
      res.writeHead(500, { "content-type": "application/json" });
      res.end(
        JSON.stringify({ detail: `bad key ${String(req.headers["x-api-key"])}`, headers: req.headers }),
      );
    });
    const err = await rejection(c.register(caps(), 1));
    expect(err).toMatchObject({ kind: "server", status: 500 });
    expect((err as Error).message).toContain("[REDACTED]");
    expectNoKey(err);
  });

  it("sends the documented headers and bodies and keeps a base-URL path prefix", async () => {
    const seen: Array<{ url: string | undefined; headers: Record<string, unknown>; body: string }> = [];
    const srv = await rawServer((req, res) => {
      let body = "";
      req.on("data", (d: Buffer) => {
        body += d.toString();
      });
      req.on("end", () => {
        seen.push({ url: req.url, headers: req.headers, body });
        if (req.url?.endsWith("/register")) {
          res.writeHead(200, { "content-type": "application/json" });
          res.end('{"status":"ok","session_token":"sess-abc-123"}');
        } else res.writeHead(204).end();
      });
    });
    cleanups.push(() => srv.close());
    const keyed = client(`${srv.url}/api/`, { region: "eu-west" });
    cleanups.push(() => keyed.close());
    await keyed.register(caps(), 3);
    expect(await keyed.poll(2.7)).toBeNull();
    expect(seen[0]?.url).toBe("/api/v1/miners/register");
    expect(JSON.parse(seen[0]?.body ?? "")).toEqual({
      capabilities: caps(),
      concurrency: 3,
      region: "eu-west",
    });
    expect(seen[1]?.url).toBe("/api/v1/miners/poll");
    expect(JSON.parse(seen[1]?.body ?? "")).toEqual({ max_wait_seconds: 2 });
    // With an API key, the key authenticates; the session token is not sent.
    expect(seen[1]?.headers).toMatchObject({ "x-api-key": API_KEY, "x-miner-id": "miner-1" });
    expect(seen[1]?.headers["authorization"]).toBeUndefined();

    // Without a key or token, the session token from register is sent back as a bearer token.
    const anon = client(srv.url, { apiKey: undefined });
    cleanups.push(() => anon.close());
    await anon.register(caps(), 1);
    await anon.heartbeat({ inflight: 1, metadata: { a: 1 } });
    const hb = seen.at(-1);
    expect(hb?.headers["authorization"]).toBe("Bearer sess-abc-123");
    expect(hb?.headers["x-api-key"]).toBeUndefined();
    expect(JSON.parse(hb?.body ?? "")).toEqual({ inflight: 1, status: "ONLINE", metadata: { a: 1 } });
  });

  it("preserves the coordinator receipt's raw text byte for byte", async () => {
    const receipt =
      '{ "version" : "1.0", "units": 1.0, "price": 1e-05, "nonce": 123456789012345678901234567890,' +
      ' "big": -9007199254740993, "text": "a\\"b\\\\c\\u00e9\\ud83d\\ude00", "nested": {"receipt": [1.50, {"x": null}]},' +
      ' "signature": {"alg": "Ed25519", "key_id": "abc", "sig": "def"} }';
    const body = `{"receipt": {"decoy": true}, "status":"ok",\n  "receipt"  :  ${receipt}  ,"trailer":[1,2]}`;
    const c = await against((_req, res) =>
      res.writeHead(200, { "content-type": "application/json" }).end(body),
    );
    const ack = await c.submit(completed("job-1"));
    expect(ack.coordinatorReceiptText).toBe(receipt);
  });

  it("returns a null receipt text when the coordinator sends none", async () => {
    const c = await against((_req, res) => res.writeHead(200).end('{"status":"ok","receipt":null}'));
    expect(await c.submit(completed("job-1"))).toMatchObject({ status: 200, coordinatorReceiptText: null });
  });
});
