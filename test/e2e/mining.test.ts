import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { stateFiles } from "../../src/paths.js";
import {
  coordinatorWithReceipts,
  fastOverrides,
  inferenceJob,
  minerConfig,
  modelsDir,
  startMiner,
} from "../support/harness.js";

let coordinator: LocalCoordinator | null = null;
afterEach(async () => {
  await coordinator?.close();
  coordinator = null;
});

const allFinal = (ids: string[]) => (c: LocalCoordinator) =>
  ids.every((id) => ["COMPLETED", "FAILED"].includes(c.job(id)?.state ?? ""));

describe.each([
  ["aitbc", 1],
  ["aitbc", 4],
  ["claim", 1],
  ["claim", 4],
] as const)("mining end to end (%s dialect, concurrency %i)", (protocol, concurrency) => {
  it("completes every job once with a verified receipt and the same greedy output per prompt", async () => {
    const started = await coordinatorWithReceipts();
    coordinator = started.coordinator;
    const events: string[] = [];
    coordinator.on((e) => events.push(e.type));
    const ids = Array.from({ length: 8 }, (_, i) => coordinator!.enqueue(inferenceJob(i % 4)));
    const cfg = minerConfig(coordinator.url, {
      protocol,
      concurrency,
      coordinatorKey: started.coordinatorKey.publicKeyHex,
    });
    const miner = await startMiner(cfg);
    await coordinator.waitFor(allFinal(ids), 60_000);
    const exit = await miner.stop();
    expect(exit.code).toBe(0);

    const jobs = ids.map((id) => coordinator!.job(id)!);
    for (const job of jobs) {
      expect(job.state).toBe("COMPLETED");
      expect(job.submissions).toBe(1);
      expect(job.receiptCheck).toEqual({ ok: true });
      const receipt = job.minerReceipt as Record<string, unknown>;
      expect(receipt).toMatchObject({
        job_id: job.jobId,
        miner_id: "test-miner",
        model: "tiny",
        units: 8,
        unit_type: "tokens",
      });
    }
    if (protocol === "claim") {
      // The claim dialect reports completion as an ISO time: it must be now, not some other epoch.
      const at = Date.parse((jobs[0]!.result as { completed_at: string }).completed_at);
      expect(Math.abs(Date.now() - at)).toBeLessThan(120_000);
    }
    // Same prompt, greedy decoding: same output, whatever the batching.
    const outputs = jobs.map((j) => (j.result as { output: string }).output);
    expect(outputs[0]!.length).toBeGreaterThan(0);
    expect(outputs[4]).toBe(outputs[0]);
    expect(outputs[5]).toBe(outputs[1]);
    // Every receipt, ours and (aitbc) the coordinator's, is in the receipts log with its verification.
    const log = readFileSync(stateFiles.receiptsLog(cfg.stateDir), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { kind: string; jobId: string; verified: boolean | null });
    for (const id of ids) {
      expect(log.filter((e) => e.jobId === id && e.kind === "miner")).toHaveLength(1);
      if (protocol === "aitbc") {
        // One coordinator receipt per job, verified — none only if the answer carrying it was
        // lost (a retry then meets "already done", which carries no receipt).
        const theirs = log.filter((e) => e.jobId === id && e.kind === "coordinator").map((e) => e.verified);
        expect(theirs.length <= 1 && theirs.every((v) => v === true), JSON.stringify(theirs)).toBe(true);
      }
    }
    if (protocol === "aitbc") expect(log.filter((e) => e.kind === "coordinator").length).toBeGreaterThan(0);
    expect(events).toContain("registered");
    if (protocol === "aitbc") expect(events).toContain("deregistered");
    if (protocol === "aitbc")
      expect(coordinator.stats().byRoute).toHaveProperty(["POST /v1/miners/heartbeat"]);
  });
});

describe("bad jobs", () => {
  it("fails each bad job with a reason, completes the good ones around them, keeps running", async () => {
    const started = await coordinatorWithReceipts();
    coordinator = started.coordinator;
    const good1 = coordinator.enqueue(inferenceJob(1));
    const bad = {
      missingPrompt: coordinator.enqueue({ payload: { model: "tiny" } }),
      nonStringPrompt: coordinator.enqueue({ payload: { model: "tiny", prompt: 42 } }),
      unknownModel: coordinator.enqueue({ payload: { model: "llama3.2", prompt: "hi" } }),
      oversized: coordinator.enqueue({ payload: { model: "tiny", prompt: "x".repeat(40_000) } }),
      negativeTokens: coordinator.enqueue({ payload: { model: "tiny", prompt: "hi", max_tokens: -5 } }),
      textTokens: coordinator.enqueue({ payload: { model: "tiny", prompt: "hi", max_tokens: "many" } }),
      unknownType: coordinator.enqueue({ payload: { type: "training", model: "tiny", prompt: "hi" } }),
    };
    const good2 = coordinator.enqueue(inferenceJob(2));
    const miner = await startMiner(minerConfig(coordinator.url, { concurrency: 2 }));
    const ids = [good1, good2, ...Object.values(bad)];
    await coordinator.waitFor(allFinal(ids), 60_000);
    const expected: Record<keyof typeof bad, string> = {
      missingPrompt: "invalid_prompt",
      nonStringPrompt: "invalid_prompt",
      unknownModel: "model_not_found",
      oversized: "prompt_too_long",
      negativeTokens: "invalid_max_tokens",
      textTokens: "invalid_max_tokens",
      unknownType: "unsupported_job_type",
    };
    for (const [name, id] of Object.entries(bad)) {
      const job = coordinator.job(id)!;
      expect(job.state, name).toBe("FAILED");
      expect(job.error?.code, name).toBe(expected[name as keyof typeof bad]);
      expect(job.error?.message.length, name).toBeGreaterThan(10);
    }
    expect(coordinator.job(good1)!.state).toBe("COMPLETED");
    expect(coordinator.job(good2)!.state).toBe("COMPLETED");
    // Still mining after all that.
    const late = coordinator.enqueue(inferenceJob(3));
    await coordinator.waitFor((c) => c.job(late)?.state === "COMPLETED", 60_000);
    expect((await miner.stop()).code).toBe(0);
  });

  it("a non-object payload is failed, not a crash", async () => {
    // The local coordinator refuses such payloads, so a bare server hands one out.
    const fails: unknown[] = [];
    let handedOut = false;
    const server = createServer(async (req, res) => {
      let body = "";
      for await (const c of req) body += c;
      res.setHeader("content-type", "application/json");
      if (req.url === "/v1/miners/poll" && !handedOut) {
        handedOut = true;
        res.end(JSON.stringify({ job_id: "job-array", payload: ["not", "an", "object"], constraints: {} }));
      } else if (req.url === "/v1/miners/poll") {
        res.writeHead(204).end();
      } else {
        if (req.url?.endsWith("/fail")) fails.push(JSON.parse(body));
        res.end('{"status":"ok"}');
      }
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const miner = await startMiner(minerConfig(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
    const end = Date.now() + 20_000;
    while (fails.length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    expect(fails[0]).toMatchObject({ error_code: "invalid_payload" });
    expect((await miner.stop()).code).toBe(0);
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
});

describe("model changes", () => {
  it("a model file added while mining is advertised to the coordinator and served", async () => {
    const { copyFileSync, mkdtempSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const dir = mkdtempSync(join(tmpdir(), "models-"));
    copyFileSync(join(modelsDir, "tiny.gguf"), join(dir, "tiny.gguf"));
    const started = await coordinatorWithReceipts();
    coordinator = started.coordinator;
    const miner = await startMiner(minerConfig(coordinator.url, { models: dir }), undefined, {
      ...fastOverrides,
      modelRefreshMs: 200,
    });
    const caps = () =>
      (coordinator!.miners()[0]?.capabilities as { models?: string[] } | undefined)?.models ?? [];
    await coordinator.waitFor(() => caps().includes("tiny"), 60_000);
    copyFileSync(join(modelsDir, "tiny.gguf"), join(dir, "tiny-copy.gguf"));
    await coordinator.waitFor(() => caps().includes("tiny-copy"), 60_000);
    const id = coordinator.enqueue({
      payload: { model: "tiny-copy", prompt: "hello", max_tokens: 4, temperature: 0 },
    });
    await coordinator.waitFor(allFinal([id]), 60_000);
    expect(coordinator.job(id)!.state).toBe("COMPLETED");
    expect((await miner.stop()).code).toBe(0);
  });
});
