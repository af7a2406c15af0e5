import { afterEach, describe, expect, it } from "vitest";
import type { LocalCoordinator } from "../../src/coordinator/local/server-types.js";
import { coordinatorWithReceipts, inferenceJob, minerConfig, startMiner } from "./harness.js";

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
    const ids = Array.from({ length: 8 }, (_, i) => coordinator!.enqueue(inferenceJob(i % 4)));
    const miner = await startMiner(
      minerConfig(coordinator.url, {
        protocol,
        concurrency,
        coordinatorKey: started.coordinatorKey.publicKeyHex,
      }),
    );
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
    // Same prompt, greedy decoding: same output, whatever the batching.
    const outputs = jobs.map((j) => (j.result as { output: string }).output);
    expect(outputs[0]!.length).toBeGreaterThan(0);
    expect(outputs[4]).toBe(outputs[0]);
    expect(outputs[5]).toBe(outputs[1]);
    const miners = coordinator.miners();
    expect(miners.map((m) => m.minerId)).toContain("test-miner");
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
    await coordinator.waitFor((c) => c.job(late)?.state === "COMPLETED", 30_000);
    expect((await miner.stop()).code).toBe(0);
  });

  it("a non-object payload is failed, not a crash", async () => {
    const started = await coordinatorWithReceipts();
    coordinator = started.coordinator;
    const id = coordinator.enqueue({
      payload: ["not", "an", "object"] as unknown as Record<string, unknown>,
    });
    const miner = await startMiner(minerConfig(coordinator.url));
    await coordinator.waitFor(allFinal([id]), 30_000);
    expect(coordinator.job(id)!.error?.code).toBe("invalid_payload");
    expect((await miner.stop()).code).toBe(0);
  });
});
