import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { createCoordinatorClient } from "../../src/coordinator/client.js";
import { CoordinatorError, UnusableJobError } from "../../src/coordinator/errors.js";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { silentLogger } from "../../src/log.js";
import { validatePayload } from "../../src/miner/screening.js";
import { API_KEY, coordinatorWithReceipts, minerConfig, startMiner } from "../support/harness.js";

let coordinator: LocalCoordinator | null = null;
afterEach(async () => {
  await coordinator?.close();
  coordinator = null;
});

const hostileValue = fc.oneof(
  fc.anything(),
  fc.string({ unit: "binary", maxLength: 300 }),
  fc.double(),
  fc.integer(),
  fc.constantFrom(-1, 0, 1e308, Number.NaN, "", "tiny", null, [], {}, "\u0000", "x".repeat(50_000)),
);

const hostilePayload = fc.oneof(
  hostileValue,
  fc.record(
    {
      type: fc.oneof(fc.constant("inference"), hostileValue),
      model: fc.oneof(fc.constant("tiny"), hostileValue),
      prompt: fc.oneof(fc.string({ minLength: 1, maxLength: 40 }), hostileValue),
      max_tokens: fc.oneof(fc.integer({ min: 1, max: 3 }), hostileValue),
      temperature: fc.oneof(fc.constant(0), hostileValue),
      top_p: hostileValue,
      seed: hostileValue,
      stop: fc.oneof(fc.array(fc.string({ maxLength: 4 }), { maxLength: 3 }), hostileValue),
    },
    { requiredKeys: [] },
  ),
);

describe("fuzz: hostile job payloads", () => {
  it("validation never throws and every rejection has a code and a message", () => {
    const limits = { maxPromptChars: 1000, maxTokens: 64, defaultMaxTokens: 4 };
    fc.assert(
      fc.property(hostilePayload, (payload) => {
        const v = validatePayload(payload, limits);
        if (v.ok) {
          expect(v.request.maxTokens).toBeGreaterThanOrEqual(1);
          expect(v.request.maxTokens).toBeLessThanOrEqual(64);
          expect(typeof v.request.prompt).toBe("string");
        } else {
          expect(v.rejection.errorCode).toMatch(/^[a-z_]+$/);
          expect(v.rejection.message.length).toBeGreaterThan(0);
          expect(v.rejection.message.length).toBeLessThan(400);
        }
      }),
      { numRuns: 5000 },
    );
  });

  it("the miner fails each bad job with a reason, runs the good ones, and keeps running", async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    // The local coordinator only queues object payloads (others are covered by the bare-server test).
    const payloads = fc
      .sample(hostilePayload, { numRuns: 400, seed: 42 })
      .filter((p) => typeof p === "object" && p !== null && !Array.isArray(p))
      .slice(0, 150);
    const ids = payloads.map((p) => coordinator!.enqueue({ payload: p as Record<string, unknown> }));
    const miner = await startMiner(
      minerConfig(coordinator.url, { concurrency: 4, maxPromptChars: 1000, maxTokens: 8 }),
    );
    await coordinator.waitFor(
      (c) => ids.every((id) => ["COMPLETED", "FAILED"].includes(c.job(id)?.state ?? "")),
      90_000,
    );
    let failed = 0;
    for (const id of ids) {
      const job = coordinator.job(id)!;
      if (job.state === "FAILED") {
        failed++;
        expect(job.error?.code).toMatch(/^[a-z_]+$/);
        expect(job.error?.message.length).toBeGreaterThan(0);
      }
    }
    expect(failed).toBeGreaterThan(0);
    expect(failed).toBeLessThan(ids.length);
    expect((await miner.stop()).code).toBe(0);
  });
});

describe("fuzz: hostile coordinator answers", () => {
  const hostileBody = fc.oneof(
    fc.string({ unit: "binary", maxLength: 200 }),
    fc.jsonValue().map((v) => JSON.stringify(v)),
    fc
      .record(
        { job_id: hostileValue, payload: hostileValue, constraints: hostileValue },
        { requiredKeys: [] },
      )
      .map((v) => JSON.stringify(v)),
    fc.constantFrom(
      "",
      "{",
      "null",
      "[]",
      '{"job_id":"../../x"}',
      '{"job_id":"a","payload":1}',
      "\u0000\u0000",
    ),
  );

  it("the client returns a job, names an unusable one, or throws a CoordinatorError, never anything else", async () => {
    const bodies = fc.sample(fc.tuple(fc.constantFrom(200, 201, 204, 400, 404, 429, 500), hostileBody), {
      numRuns: 400,
      seed: 7,
    });
    let i = 0;
    const server = createServer((req, res) => {
      req.resume();
      const [status, body] = bodies[i++ % bodies.length]!;
      res.writeHead(status, { "content-type": "application/json" });
      res.end(status === 204 ? undefined : body);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const client = createCoordinatorClient({
      protocol: "aitbc",
      baseUrl: url,
      apiKey: API_KEY,
      minerId: "fuzz",
      timeoutMs: 2000,
      log: silentLogger(),
    });
    try {
      for (let n = 0; n < bodies.length; n++) {
        try {
          const job = await client.poll(0);
          if (job !== null) expect(typeof job.jobId).toBe("string");
        } catch (err) {
          if (err instanceof UnusableJobError) {
            // Handed over but unusable: it must name the job so the miner can fail it back.
            expect(typeof err.jobId).toBe("string");
            expect(err.jobId.length).toBeGreaterThan(0);
          } else expect(err).toBeInstanceOf(CoordinatorError);
          expect((err as Error).message).not.toContain(API_KEY);
        }
      }
    } finally {
      await client.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it("a miner facing garbage answers keeps running and stops cleanly", async () => {
    const bodies = fc.sample(hostileBody, { numRuns: 200, seed: 11 });
    let i = 0;
    const server = createServer((req, res) => {
      req.resume();
      if (req.url?.endsWith("/register") || req.url?.endsWith("/heartbeat") || req.method === "DELETE") {
        res.writeHead(200, { "content-type": "application/json" });
        res.end('{"status":"ok"}');
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(bodies[i++ % bodies.length]);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const miner = await startMiner(minerConfig(url, { concurrency: 2, maxTokens: 4 }));
    const deadline = Date.now() + 40_000;
    while (i < 8 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(i).toBeGreaterThanOrEqual(8);
    expect((await miner.stop()).code).toBe(0);
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
});
