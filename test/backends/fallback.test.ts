import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFallbackBackend } from "../../src/backends/fallback.js";
import { createLlamaBackend } from "../../src/backends/llama/index.js";
import { createOllamaBackend } from "../../src/backends/ollama.js";
import type { BackendError } from "../../src/backends/types.js";
import { silentLogger } from "../../src/log.js";
import { fixturesModels, never, req, tempDir } from "../support/backends.js";

let server: Server;
let tagRequests = 0;
let url: string;
beforeAll(async () => {
  server = createServer((q, r) => {
    r.writeHead(200, { "content-type": "application/json" });
    if (q.url === "/api/tags") {
      tagRequests++;
      return r.end(
        JSON.stringify({ models: [{ name: "llama3.2:1b" }, { name: "tiny" }, { name: "tiny:70b" }] }),
      );
    }
    q.resume();
    q.on("end", () =>
      r.end(JSON.stringify({ response: "from ollama", eval_count: 2, prompt_eval_count: 1 })),
    );
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise((r) => server.close(r)));

const llama = () =>
  createLlamaBackend({
    modelsDir: fixturesModels,
    threads: 1,
    concurrency: 1,
    gpu: false,
    log: silentLogger(),
  });

describe("fallback backend", () => {
  it("serves a model on the primary when it has it, else on the secondary, else refuses", async () => {
    const ollama = createOllamaBackend({ url, log: silentLogger(), timeoutMs: 2000, refreshIntervalMs: 0 });
    const b = createFallbackBackend(llama(), ollama, silentLogger());
    await b.init();
    try {
      expect(b.listModels().map((m) => m.name)).toEqual(["tiny", "llama3.2:1b", "tiny:70b"]);
      expect((await b.generate(req({ maxTokens: 4 }), never())).backend).toBe("llama");
      const r = await b.generate(req({ model: "llama3.2:1b" }), never());
      expect(r).toMatchObject({ backend: "ollama", output: "from ollama", model: "llama3.2:1b" });
      const e = await b.generate(req({ model: "mistral" }), never()).catch((x: unknown) => x);
      expect((e as BackendError).code).toBe("model_not_found");
    } finally {
      await b.close();
    }
  });

  it("prefers an exact name in either backend to the llama backend's tag fallback", async () => {
    const ollama = createOllamaBackend({ url, log: silentLogger(), timeoutMs: 2000, refreshIntervalMs: 0 });
    const primary = llama();
    const b = createFallbackBackend(primary, ollama, silentLogger());
    await b.init();
    try {
      // Alone, the llama backend serves any tiny:TAG with its lone tiny.gguf (docs/models.md)...
      expect(primary.hasModel("tiny:70b")).toBe(true);
      expect(primary.hasExactModel?.("tiny:70b")).toBe(false);
      // ...but Ollama has exactly tiny:70b (and tiny:latest), so those go there.
      expect((await b.generate(req({ model: "tiny:70b" }), never())).backend).toBe("ollama");
      expect((await b.generate(req({ model: "tiny:latest" }), never())).backend).toBe("ollama");
      // An exact name in both: the primary. A tag only the fallback rule serves: the primary too.
      expect((await b.generate(req({ model: "tiny", maxTokens: 2 }), never())).backend).toBe("llama");
      const r = await b.generate(req({ model: "tiny:8b", maxTokens: 2 }), never());
      expect(r).toMatchObject({ backend: "llama", model: "tiny:8b" });
      expect(b.hasExactModel?.("tiny:70b")).toBe(true);
      expect(b.hasExactModel?.("tiny:8b")).toBe(false);
    } finally {
      await b.close();
    }
  });

  it("runs on the primary alone when the secondary is down", async () => {
    const down = createOllamaBackend({
      url: "http://127.0.0.1:9",
      log: silentLogger(),
      timeoutMs: 1000,
      refreshIntervalMs: 0,
    });
    const b = createFallbackBackend(llama(), down, silentLogger());
    await b.init();
    try {
      expect(b.listModels().map((m) => m.name)).toEqual(["tiny"]);
      expect(b.hasModel("llama3.2:1b")).toBe(false);
      expect((await b.generate(req({ maxTokens: 4 }), never())).completionTokens).toBe(4);
    } finally {
      await b.close();
    }
  });

  it("lists only servable models: a truncated file is left out on both sides of the fallback", async () => {
    const dir = tempDir("fallback-trunc-");
    const bytes = readFileSync(join(fixturesModels, "tiny.gguf"));
    writeFileSync(join(dir, "cut.gguf"), bytes.subarray(0, bytes.length - 1));
    const primary = createLlamaBackend({
      modelsDir: dir,
      threads: 1,
      concurrency: 1,
      gpu: false,
      log: silentLogger(),
    });
    const ollama = createOllamaBackend({ url, log: silentLogger(), timeoutMs: 2000, refreshIntervalMs: 0 });
    const b = createFallbackBackend(primary, ollama, silentLogger());
    await b.init();
    try {
      expect(b.listModels().map((m) => m.name)).toEqual(["llama3.2:1b", "tiny", "tiny:70b"]);
      expect(b.hasModel("cut")).toBe(false);
      // A primary rescan that fails (models directory removed) still refreshes the secondary.
      rmSync(dir, { recursive: true });
      const tagsBefore = tagRequests;
      await expect(b.refresh!()).rejects.toMatchObject({ code: "backend_unavailable" });
      expect(tagRequests).toBe(tagsBefore + 1);
    } finally {
      await b.close();
    }
  });
});
