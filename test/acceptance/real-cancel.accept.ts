// Acceptance against the REAL upstream coordinator: a client cancels a job while the miner
// generates it. Upstream clears the job's miner (it leaves the miner's RUNNING listing); the
// miner must abort the generation, free the slot, never send a result (upstream would turn the
// CANCELED job back into COMPLETED and bill the client) and take the next job.
//   AITBC_REAL=/path/to/aitbc-real npx vitest run --config test/acceptance/vitest.config.ts real-cancel
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { writeTinyGguf } from "../../src/backends/tiny-gguf.js";
import { type Spawned, spawnCli } from "../support/cli.js";
import { repoRoot } from "../support/harness.js";
import {
  type CountingProxy,
  clientCall,
  countingProxy,
  kit,
  logLines,
  MINER_KEY,
  type RealCoordinator,
  startRealCoordinator,
  stopAll,
  waitFor,
} from "./real-kit.js";

/** A context this long lets one job generate for minutes on one thread: only an abort ends it. */
const CTX = 131_072;

let co: RealCoordinator | null = null;
let proxy: CountingProxy | null = null;
let host: Spawned | null = null;
afterAll(() => stopAll(host, proxy, co));

async function submit(c: RealCoordinator, maxTokens: number, prompt: string): Promise<string> {
  const res = await clientCall(c, "POST", "/v1/jobs", {
    payload: { type: "inference", model: "tiny", prompt, max_tokens: maxTokens },
    constraints: {},
    ttl_seconds: 900,
  });
  expect(res.status, await res.clone().text()).toBeLessThan(300);
  return ((await res.json()) as { job_id: string }).job_id;
}

async function state(c: RealCoordinator, id: string): Promise<string | null> {
  const r = await clientCall(c, "GET", `/v1/jobs/${id}`).catch(() => null);
  return r?.ok ? ((await r.json()) as { state: string }).state : null;
}

describe.skipIf(!kit)("the real coordinator: a client cancels a running job", () => {
  it("the miner aborts it, never sends a result, and takes the next job", async () => {
    const dir = mkdtempSync(join(tmpdir(), "real-cancel-"));
    const models = join(dir, "models");
    mkdirSync(models);
    writeTinyGguf(join(models, "tiny.gguf"), { name: "tiny", seed: 7, ctx: CTX });
    co = await startRealCoordinator(dir);
    proxy = await countingProxy(co.url);
    host = spawnCli(
      [
        "run",
        ...["--coordinator", proxy.url, "--coordinator-key", co.key, "--models", models],
        ...["--threads", "1", "--context-size", String(CTX), "--max-tokens", String(CTX)],
        ...["--gpus", "none", "--allow-cpu-inference"],
        ...["--state-dir", join(dir, "state"), "--log-level", "info"],
      ],
      { AITBC_API_KEY: MINER_KEY },
    );
    const events = (name: string, jobId?: string) =>
      logLines(host!).filter((l) => l["event"] === name && (jobId === undefined || l["jobId"] === jobId));
    await waitFor("the miner registered", () => (events("registered").length > 0 ? true : null), 180_000);

    const long = await submit(co, CTX - 64, "Once upon a time");
    await waitFor(
      "the long job to start",
      () => (events("job_started", long).length > 0 ? true : null),
      60_000,
    ).catch((e: Error) => {
      const tail = logLines(host!)
        .slice(-15)
        .map((l) => `${l["event"]}: ${l["msg"]} ${JSON.stringify(l["reason"] ?? l["err"] ?? "")}`);
      throw new Error(`${e.message}; the miner's last lines:\n${tail.join("\n")}`);
    });
    const cancelledAt = Date.now();
    const res = await clientCall(co, "POST", `/v1/jobs/${long}/cancel`);
    expect(res.status, await res.clone().text()).toBe(200);
    await waitFor(
      "the miner to see the cancel",
      () => (events("job_cancelled", long).length > 0 ? true : null),
      60_000,
    );
    const sawCancelMs = Date.now() - cancelledAt;

    const next = await submit(co, 8, "The next job:");
    await waitFor(
      "the next job to complete",
      async () => ((await state(co!, next)) === "COMPLETED" ? true : null),
      120_000,
    );
    const longState = await state(co, long);
    const report = {
      bench: "real-cancel",
      at: new Date().toISOString(),
      coordinator: "oib/AITBC c27c6545 (aitbc-real kit, loopback)",
      cancelSeenWithinMs: sawCancelMs,
      cancelledJobState: longState,
      verdictsSentForCancelledJob: proxy.verdicts.filter((id) => id === long).length,
      cancelledEvent: events("job_cancelled", long)[0],
      nextJobState: await state(co, next),
      answers: Object.fromEntries(proxy.counts),
    };
    const out = join(repoRoot, "bench", "results");
    mkdirSync(out, { recursive: true });
    writeFileSync(
      join(out, `real-cancel-${report.at.replace(/[:.]/g, "-")}.json`),
      `${JSON.stringify(report, null, 2)}\n`,
    );
    process.stdout.write(`real-cancel: ${JSON.stringify(report)}\n`);
    expect(longState).toBe("CANCELED");
    expect(report.verdictsSentForCancelledJob).toBe(0);
    expect(events("job_completed", long)).toEqual([]);
    expect(report.cancelledEvent).toMatchObject({ stage: "running" });
    expect(report.nextJobState).toBe("COMPLETED");
  }, 900_000);
});
