import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { stateFiles } from "../../src/paths.js";
import {
  capturingLogger,
  coordinatorWithReceipts,
  inferenceJob,
  minerConfig,
  startMiner,
} from "../support/harness.js";
import { startFaultProxy } from "../support/proxy.js";
import { storedKeys } from "../support/state-files.js";

let coordinator: LocalCoordinator | null = null;
const servers: Server[] = [];
afterEach(async () => {
  await coordinator?.close();
  coordinator = null;
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

const final = (ids: string[]) => (c: LocalCoordinator) =>
  ids.every((id) => ["COMPLETED", "FAILED"].includes(c.job(id)?.state ?? ""));

describe("lost answers", () => {
  it("a submission processed but never answered is retried and the 'already done' answer ends it", async () => {
    coordinator = (
      await coordinatorWithReceipts({ faults: { dropAfterCommitRate: 0.6, routes: ["result"], seed: 99 } })
    ).coordinator;
    const ids = Array.from({ length: 10 }, (_, i) => coordinator!.enqueue(inferenceJob(i)));
    const cfg = minerConfig(coordinator.url, { concurrency: 2 });
    const miner = await startMiner(cfg);
    await coordinator.waitFor(final(ids), 60_000);
    // Give the retries time to land, then stop: nothing may be left in the outbox.
    await coordinator.waitFor(
      (c) => c.stats().duplicateSubmissions >= c.stats().faults.dropAfterCommit,
      60_000,
    );
    expect((await miner.stop()).code).toBe(0);
    const s = coordinator.stats();
    expect(s.faults.dropAfterCommit).toBeGreaterThan(0);
    for (const id of ids) {
      expect(coordinator.job(id)!.state).toBe("COMPLETED");
      expect(coordinator.job(id)!.submissions).toBe(1);
    }
    const { readdirSync } = await import("node:fs");
    expect(readdirSync(stateFiles.outbox(cfg.stateDir)).filter((f) => f.endsWith(".json"))).toEqual([]);
  });
});

describe("secrets", () => {
  it("neither the API key nor the private key appears in debug logs through jobs, faults and errors", async () => {
    coordinator = (await coordinatorWithReceipts({ apiKeys: ["sk-live-ZZTOPSECRET-9f8e7d6c5b4a"] }))
      .coordinator;
    const proxy = await startFaultProxy(coordinator.url, [
      { route: "POST /v1/miners/register", times: 1, status: 500 },
      { route: "POST /v1/miners/poll", times: 1, status: 401 },
      { route: /\/result$/, times: 1, status: 503 },
    ]);
    const ids = [
      coordinator.enqueue(inferenceJob(1)),
      coordinator.enqueue({ payload: { model: "nope", prompt: "x" } }),
    ];
    const { log, lines } = capturingLogger("debug");
    const cfg = minerConfig(proxy.url, { apiKey: "sk-live-ZZTOPSECRET-9f8e7d6c5b4a", logLevel: "debug" });
    const miner = await startMiner(cfg, log);
    const exit = await miner.done; // the injected 401 is fatal: exit 2 with advice
    expect(exit.code).toBe(2);
    await miner.close();
    const again = await startMiner({ ...cfg }, log);
    await coordinator.waitFor(final(ids), 60_000);
    expect((await again.stop()).code).toBe(0);
    await proxy.close();

    const keyFile = JSON.parse(readFileSync(stateFiles.key(cfg.stateDir), "utf8")) as Record<string, unknown>;
    const privateParts = Object.entries(keyFile)
      .filter(([k, v]) => /seed|priv|secret/i.test(k) && typeof v === "string")
      .map(([, v]) => v as string);
    expect(privateParts.length).toBeGreaterThan(0);
    const text = lines.join("\n");
    expect(lines.length).toBeGreaterThan(20);
    expect(text).not.toContain("ZZTOPSECRET");
    for (const p of privateParts) expect(text).not.toContain(p);
  });
});

describe("backend faults", () => {
  function fakeOllama(
    handler: (path: string, body: string) => { status: number; body: string },
  ): Promise<string> {
    const server = createServer(async (req, res) => {
      let body = "";
      for await (const c of req) body += c;
      const r = handler(req.url ?? "/", body);
      res.writeHead(r.status, { "content-type": "application/json" });
      res.end(r.body);
    });
    servers.push(server);
    return new Promise((resolve) =>
      server.listen(0, "127.0.0.1", () =>
        resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`),
      ),
    );
  }

  it("Ollama answering 500 fails that job with the reason; the miner keeps going", async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    let calls = 0;
    const ollama = await fakeOllama((path) => {
      if (path === "/api/tags")
        return { status: 200, body: JSON.stringify({ models: [{ name: "qwen:0.5b", size: 1000 }] }) };
      calls++;
      return calls === 1
        ? { status: 500, body: '{"error":"CUDA error: out of memory"}' }
        : {
            status: 200,
            body: JSON.stringify({
              response: "ok from ollama",
              eval_count: 3,
              prompt_eval_count: 2,
              total_duration: 1e6,
              done: true,
            }),
          };
    });
    const a = coordinator.enqueue({ payload: { model: "qwen:0.5b", prompt: "hi", max_tokens: 3 } });
    const miner = await startMiner(
      minerConfig(coordinator.url, { backend: "ollama", ollamaUrl: ollama, models: undefined }),
    );
    await coordinator.waitFor(final([a]), 60_000);
    const b = coordinator.enqueue({ payload: { model: "qwen:0.5b", prompt: "hi again", max_tokens: 3 } });
    await coordinator.waitFor(final([b]), 60_000);
    expect((await miner.stop()).code).toBe(0);
    expect(coordinator.job(a)!.state).toBe("FAILED");
    expect(coordinator.job(a)!.error?.message).toMatch(/500|out of memory/);
    expect(coordinator.job(b)!.state).toBe("COMPLETED");
  });

  it("with --ollama-fallback, llama serves its models and Ollama serves the rest", async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    const ollama = await fakeOllama((path) =>
      path === "/api/tags"
        ? { status: 200, body: JSON.stringify({ models: [{ name: "only-in-ollama" }] }) }
        : {
            status: 200,
            body: JSON.stringify({
              response: "from ollama",
              eval_count: 2,
              prompt_eval_count: 1,
              done: true,
            }),
          },
    );
    const viaLlama = coordinator.enqueue(inferenceJob(1));
    const viaOllama = coordinator.enqueue({
      payload: { model: "only-in-ollama", prompt: "hi", max_tokens: 2 },
    });
    const miner = await startMiner(minerConfig(coordinator.url, { ollamaFallback: true, ollamaUrl: ollama }));
    await coordinator.waitFor(final([viaLlama, viaOllama]), 60_000);
    expect((await miner.stop()).code).toBe(0);
    expect(coordinator.job(viaLlama)!.state).toBe("COMPLETED");
    expect(coordinator.job(viaOllama)!.state).toBe("COMPLETED");
    expect((coordinator.job(viaOllama)!.result as { output: string }).output).toBe("from ollama");
  });

  it("Ollama down: no model can be served, so no job is taken (said once); the miner does not crash", async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    const id = coordinator.enqueue({ payload: { model: "qwen:0.5b", prompt: "hi" } });
    const { log, lines } = capturingLogger("info");
    const miner = await startMiner(
      minerConfig(coordinator.url, { backend: "ollama", ollamaUrl: "http://127.0.0.1:9", models: undefined }),
      log,
    );
    await coordinator.waitFor((c) => c.miners().length === 1, 60_000);
    await new Promise((r) => setTimeout(r, 1500));
    expect(coordinator.job(id)!.state).toBe("QUEUED"); // left for a miner that can serve it
    expect(lines.filter((l) => l.includes('"no_servable_model"'))).toHaveLength(1);
    expect((await miner.stop()).code).toBe(0);
  });
});

describe("failure reports", () => {
  it("a failure report is retried through a coordinator outage until acknowledged", async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    const proxy = await startFaultProxy(coordinator.url, [
      { route: /\/fail$/, times: 3, status: 503 },
      { route: "POST /v1/miners/register", times: 2, status: 408 },
    ]);
    const bad = coordinator.enqueue({ payload: { model: "tiny", prompt: 7 } });
    const good = coordinator.enqueue(inferenceJob(1));
    const cfg = minerConfig(proxy.url);
    const miner = await startMiner(cfg);
    await coordinator.waitFor(final([bad, good]), 60_000);
    expect(coordinator.job(bad)!.error?.code).toBe("invalid_prompt");
    expect(proxy.injected["503"]).toBe(3);
    expect(proxy.injected["408"]).toBe(2); // a 408 at registration is retried, not fatal
    expect((await miner.stop()).code).toBe(0);
    expect(storedKeys(stateFiles.journal(cfg.stateDir))).toEqual([]);
    await proxy.close();
  });

  it("a failure report still pending at shutdown is sent by the next start", async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    const proxy = await startFaultProxy(coordinator.url, [{ route: /\/fail$/, times: 1e9, status: 503 }]);
    const bad = coordinator.enqueue({ payload: { model: "unknown-model", prompt: "x" } });
    const cfg = minerConfig(proxy.url);
    const first = await startMiner(cfg);
    await coordinator.waitFor((c) => c.job(bad)?.state === "RUNNING", 60_000);
    await new Promise((r) => setTimeout(r, 1000));
    expect((await first.stop()).code).toBe(0);
    // Not failed yet at the coordinator (deregistering requeued it); the verdict waits in the journal.
    expect(coordinator.job(bad)!.state).not.toBe("FAILED");
    expect(storedKeys(stateFiles.journal(cfg.stateDir))).toEqual([bad]);

    proxy.clear();
    const second = await startMiner(cfg);
    await coordinator.waitFor(final([bad]), 60_000);
    expect(coordinator.job(bad)!.error?.code).toBe("model_not_found");
    expect((await second.stop()).code).toBe(0);
    expect(storedKeys(stateFiles.journal(cfg.stateDir))).toEqual([]);
    await proxy.close();
  });

  it("a payload nested too deep to store fails that job; the miner keeps running", async () => {
    const fails: unknown[] = [];
    let handed = 0;
    let deep = '"x"';
    for (let i = 0; i < 20_000; i++) deep = `[${deep}]`;
    const server = createServer(async (req, res) => {
      let body = "";
      for await (const c of req) body += c;
      res.setHeader("content-type", "application/json");
      if (req.url === "/v1/miners/poll") {
        handed++;
        if (handed === 1) {
          res.end(`{"job_id":"deep-1","payload":{"model":"tiny","prompt":"hi","extra":${deep}}}`);
          return;
        }
        res.writeHead(204).end();
        return;
      }
      if (req.url?.endsWith("/fail")) fails.push(JSON.parse(body));
      res.end('{"status":"ok"}');
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const miner = await startMiner(minerConfig(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
    const end = Date.now() + 20_000;
    // The failure report and the next poll race each other: wait for both.
    while ((fails.length === 0 || handed < 2) && Date.now() < end)
      await new Promise((r) => setTimeout(r, 20));
    expect(fails[0]).toMatchObject({ error_code: "invalid_payload" });
    expect(handed).toBeGreaterThan(1); // still polling
    expect((await miner.stop()).code).toBe(0);
  });
});
