import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Backoff } from "../../src/backoff.js";
import type { CompletedJob } from "../../src/coordinator/types.js";
import { CORRUPT_NAME, LOG_NAME } from "../../src/miner/durable-store.js";
import { ClaimJournal } from "../../src/miner/journal.js";
import { Outbox } from "../../src/miner/outbox.js";

function result(jobId: string): CompletedJob {
  return {
    jobId,
    output: "out",
    model: "tiny",
    promptTokens: 2,
    completionTokens: 3,
    executionTimeS: 0.01,
    startedAt: 1,
    completedAt: 2,
    metrics: {
      duration_ms: 10,
      gpu_utilization: null,
      memory_used: null,
      memory_peak: null,
      units: 3,
      unit_type: "tokens",
    },
    receipt: { job_id: jobId },
  };
}

describe("outbox", () => {
  it("keeps results across instances until removed, in one 0600 log", async () => {
    const dir = mkdtempSync(join(tmpdir(), "outbox-"));
    const a = new Outbox(dir);
    await a.open();
    await a.put(result("job-1"));
    await a.put(result("../../etc/passwd"));
    expect(readdirSync(dir).sort()).toEqual([".tmp", LOG_NAME]);
    expect(statSync(join(dir, LOG_NAME)).mode & 0o777).toBe(0o600);
    expect(await a.depth()).toBe(2);
    await a.close();

    const b = new Outbox(dir);
    await b.open();
    const { results } = await b.pending();
    expect(results.map((r) => r.jobId).sort()).toEqual(["../../etc/passwd", "job-1"]);
    expect(results.find((r) => r.jobId === "job-1")).toEqual(result("job-1"));
    await b.remove("job-1");
    expect(await b.depth()).toBe(1);
  });

  it("moves an unreadable entry aside instead of crashing or deleting it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "outbox-"));
    const o = new Outbox(dir);
    await o.open();
    await o.put(result("good"));
    await o.put(result("bad"));
    await o.close();
    const log = join(dir, LOG_NAME);
    writeFileSync(
      log,
      readFileSync(log, "utf8").replace('"jobId":"bad","output":"out"', '"jobId":"bad","output":"0ut"'),
    );
    const again = new Outbox(dir);
    await again.open();
    const { results, corrupt } = await again.pending();
    expect(results.map((r) => r.jobId)).toEqual(["good"]);
    expect(corrupt).toMatchObject([{ key: "bad", path: join(dir, CORRUPT_NAME) }]);
    expect(readFileSync(join(dir, CORRUPT_NAME), "utf8")).toContain('"0ut"');
  });

  it("keeps a rejected result for the operator", async () => {
    const dir = mkdtempSync(join(tmpdir(), "outbox-"));
    const o = new Outbox(dir);
    await o.open();
    await o.put(result("bad"));
    const path = await o.reject(result("bad"), "HTTP 400");
    expect(statSync(path).isFile()).toBe(true);
    expect(await o.depth()).toBe(0);
  });
});

describe("claim journal", () => {
  it("records and forgets claims durably", async () => {
    const dir = mkdtempSync(join(tmpdir(), "journal-"));
    const j = new ClaimJournal(dir);
    await j.open();
    await j.record({ jobId: "j1", payload: { model: "m" }, constraints: null, claimedAt: 1, deadlineAt: 2 });
    const other = new ClaimJournal(dir);
    await other.open();
    expect((await other.entries()).jobs.map((e) => e.jobId)).toEqual(["j1"]);
    await j.remove("j1");
    expect((await j.entries()).jobs).toEqual([]);
  });
});

describe("backoff", () => {
  it("grows exponentially with full jitter under a cap and honours Retry-After", () => {
    const b = new Backoff({ baseMs: 100, capMs: 1000, random: () => 0.999 });
    const delays = Array.from({ length: 6 }, () => b.next());
    expect(delays).toEqual([99, 199, 399, 799, 999, 999]);
    const z = new Backoff({ baseMs: 100, capMs: 1000, random: () => 0 });
    expect(z.next()).toBe(0);
    expect(z.next(5000)).toBe(5000);
  });
});
