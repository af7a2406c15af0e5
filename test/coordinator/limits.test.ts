import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { createCoordinatorClient } from "../../src/coordinator/client.js";
import type { CoordinatorError } from "../../src/coordinator/errors.js";
import { MAX_RETRY_AFTER_MS, parseRetryAfter } from "../../src/coordinator/http.js";
import { silentLogger } from "../../src/log.js";

describe("Retry-After", () => {
  it("is capped, so a hostile or mistaken value cannot stall the miner for days or overflow a timer", () => {
    expect(parseRetryAfter("86400")).toBe(MAX_RETRY_AFTER_MS);
    expect(parseRetryAfter("99999999999")).toBe(MAX_RETRY_AFTER_MS);
    expect(parseRetryAfter(new Date(Date.now() + 40 * 86_400_000).toUTCString())).toBe(MAX_RETRY_AFTER_MS);
    expect(parseRetryAfter("3")).toBe(3000);
  });
});

describe("redirects", () => {
  it("are a retryable bad_response, not a client error that would drop a result", async () => {
    const server = createServer((req, res) => {
      req.resume();
      res.writeHead(307, { location: "http://127.0.0.1:1/elsewhere" }).end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const client = createCoordinatorClient({
      protocol: "aitbc",
      baseUrl: url,
      apiKey: "key-12345678",
      minerId: "m",
      timeoutMs: 2000,
      log: silentLogger(),
    });
    try {
      const err = (await client.poll(0).catch((e: unknown) => e)) as CoordinatorError;
      expect(err.kind).toBe("bad_response");
      expect(err.retryable).toBe(true);
    } finally {
      await client.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
