// The Ollama adapter against a loopback server that speaks /api/tags and /api/generate, with
// per-test behaviour for the failure modes.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createOllamaBackend } from "../../src/backends/ollama.js";
import { BackendError } from "../../src/backends/types.js";
import { silentLogger } from "../../src/log.js";
import { never, req } from "../support/backends.js";

type Handler = (req: IncomingMessage, body: string, res: ServerResponse) => void;

const TAGS = { models: [{ name: "llama3.2:1b", size: 1234 }, { name: "tiny:latest" }] };
let server: Server | null = null;
const bodies: unknown[] = [];

async function serve(generate: Handler, tags: Handler = (_q, _b, r) => json(r, 200, TAGS)): Promise<string> {
  server = createServer((q, r) => {
    const chunks: Buffer[] = [];
    q.on("data", (c: Buffer) => chunks.push(c));
    q.on("end", () => {
      const body = Buffer.concat(chunks).toString();
      if (q.url === "/api/tags" && q.method === "GET") return tags(q, body, r);
      if (q.url === "/api/generate" && q.method === "POST") {
        bodies.push(JSON.parse(body));
        return generate(q, body, r);
      }
      json(r, 404, { error: "no route" });
    });
  });
  await new Promise<void>((ok) => server!.listen(0, "127.0.0.1", ok));
  return `http://127.0.0.1:${(server!.address() as AddressInfo).port}`;
}

function json(r: ServerResponse, status: number, body: unknown): void {
  r.writeHead(status, { "content-type": "application/json" });
  r.end(JSON.stringify(body));
}

const ok: Handler = (_q, _b, r) =>
  json(r, 200, {
    response: "Hello there",
    done: true,
    done_reason: "length",
    eval_count: 8,
    prompt_eval_count: 5,
    total_duration: 12_500_000,
  });

afterEach(async () => {
  bodies.length = 0;
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r) ?? r(undefined));
  server = null;
});

async function backendFor(
  url: string,
  over: { timeoutMs?: number; maxBodyBytes?: number; unloadAfterJob?: boolean } = {},
) {
  const b = createOllamaBackend({ url, log: silentLogger(), timeoutMs: 2000, refreshIntervalMs: 0, ...over });
  await b.init();
  return b;
}

async function failure(p: Promise<unknown>): Promise<BackendError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BackendError);
  return err as BackendError;
}

describe("ollama backend", () => {
  it("lists tags and runs a job with the payload's options", async () => {
    const b = await backendFor(await serve(ok));
    expect(b.listModels().map((m) => m.name)).toEqual(["llama3.2:1b", "tiny:latest"]);
    expect(b.hasModel("tiny")).toBe(true); // "tiny" is "tiny:latest" in Ollama
    expect(b.hasModel("llama3.2")).toBe(false); // only :1b is there
    const r = await b.generate(
      req({ model: "llama3.2:1b", maxTokens: 8, temperature: 0.7, topP: 0.9, seed: 3, stop: ["\n"] }),
      never(),
    );
    expect(r).toEqual({
      output: "Hello there",
      model: "llama3.2:1b",
      backend: "ollama",
      promptTokens: 5,
      completionTokens: 8,
      durationMs: 13,
      stopReason: "maxTokens",
    });
    expect(bodies[0]).toEqual({
      model: "llama3.2:1b",
      prompt: "The quick brown fox",
      stream: false,
      options: { num_predict: 8, temperature: 0.7, top_p: 0.9, seed: 3, stop: ["\n"] },
    });
    await b.close();
  });

  it("with unloadAfterJob, asks Ollama to unload the model after each job (keep_alive 0)", async () => {
    const b = await backendFor(await serve(ok), { unloadAfterJob: true });
    await b.generate(req({ model: "tiny", maxTokens: 8 }), never());
    expect(bodies[0]).toMatchObject({ model: "tiny", stream: false, keep_alive: 0 });
    expect(b.hasExactModel?.("tiny")).toBe(true);
    await b.close();
  });

  it("refuses a model it does not have without calling /api/generate", async () => {
    const b = await backendFor(await serve(ok));
    expect((await failure(b.generate(req({ model: "mistral" }), never()))).code).toBe("model_not_found");
    expect(bodies).toHaveLength(0);
  });

  it("maps HTTP 500 and 404 to job failures with the server's message", async () => {
    const b = await backendFor(await serve((_q, _b, r) => json(r, 500, { error: "CUDA out of memory" })));
    const e = await failure(b.generate(req({ model: "tiny" }), never()));
    expect(e.code).toBe("inference_failed");
    expect(e.message).toMatch(/HTTP 500: CUDA out of memory/);
    await b.close();
    server?.close();
    const b2 = await backendFor(
      await serve((_q, _b, r) => json(r, 404, { error: "model 'tiny' not found" })),
    );
    expect((await failure(b2.generate(req({ model: "tiny" }), never()))).code).toBe("model_not_found");
  });

  it("rejects malformed and wrongly shaped JSON", async () => {
    let body = "{not json";
    const b = await backendFor(
      await serve((_q, _b, r) => {
        r.writeHead(200, { "content-type": "application/json" });
        r.end(body);
      }),
    );
    expect((await failure(b.generate(req(), never()))).message).toMatch(/malformed JSON/);
    body = JSON.stringify({ response: 42 });
    expect((await failure(b.generate(req(), never()))).message).toMatch(/lacks a string `response`/);
  });

  it("stops reading an oversized body at the cap", async () => {
    let written = 0;
    const b = await backendFor(
      await serve((_q, _b, r) => {
        r.writeHead(200, { "content-type": "application/json" });
        const chunk = Buffer.alloc(64 * 1024, 0x61);
        // An endless body: only the client's cap can end this exchange.
        const pump = () => {
          while (!r.destroyed && written < 64 * 1024 * 1024 && r.write(chunk)) written += chunk.length;
          if (!r.destroyed && written < 64 * 1024 * 1024) r.once("drain", pump);
        };
        r.on("close", () => undefined);
        pump();
      }),
      { maxBodyBytes: 256 * 1024 },
    );
    const e = await failure(b.generate(req(), never()));
    expect(e.code).toBe("inference_failed");
    expect(e.message).toMatch(/larger than 262144 bytes/);
    expect(written).toBeLessThan(64 * 1024 * 1024);
  });

  it("gives up on a body that trickles past the timeout", async () => {
    const b = await backendFor(
      await serve((_q, _b, r) => {
        r.writeHead(200, { "content-type": "application/json" });
        r.write('{"response": "');
        const t = setInterval(() => (r.destroyed ? clearInterval(t) : r.write("a")), 50);
      }),
      { timeoutMs: 400 },
    );
    const e = await failure(b.generate(req(), never()));
    expect(e.code).toBe("inference_failed");
    expect(e.message).toMatch(/timed out after 400 ms/);
  });

  it("turns the caller's abort into an aborted error", async () => {
    const b = await backendFor(await serve(() => undefined)); // never answers
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    expect((await failure(b.generate(req(), ac.signal))).code).toBe("aborted");
  });

  it("reports a server that is down as backend_unavailable", async () => {
    const url = await serve(ok);
    const b = await backendFor(url);
    server!.closeAllConnections();
    await new Promise((r) => server!.close(r));
    server = null;
    expect((await failure(b.generate(req(), never()))).code).toBe("backend_unavailable");
    const fresh = createOllamaBackend({ url, log: silentLogger(), timeoutMs: 1000, refreshIntervalMs: 0 });
    const e = await failure(fresh.init());
    expect(e.code).toBe("backend_unavailable");
    expect(e.message).toMatch(/ollama serve/);
  });

  it("validates /api/tags and picks up newly pulled models on demand", async () => {
    let tags: unknown = { models: [{ name: "tiny" }] };
    const url = await serve(ok, (_q, _b, r) => json(r, 200, tags));
    const b = await backendFor(url);
    expect(b.hasModel("new:7b")).toBe(false);
    tags = { models: [{ name: "tiny" }, { name: "new:7b" }] };
    // A job for a model missing from the cached list triggers one refresh before refusing.
    expect((await b.generate(req({ model: "new:7b" }), never())).output).toBe("Hello there");
    tags = { models: "nope" };
    expect((await failure(b.refresh())).message).toMatch(/unexpected response shape/);
    expect(b.hasModel("new:7b")).toBe(true); // a bad answer keeps the last good list
  });
});
