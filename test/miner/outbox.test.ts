import { mkdtempSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Backoff } from "../../src/backoff.js";
import type { CompletedJob } from "../../src/coordinator/types.js";
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
  it("keeps results across instances until removed, one 0600 file each", async () => {
    const dir = mkdtempSync(join(tmpdir(), "outbox-"));
    const a = new Outbox(dir);
    await a.open();
    await a.put(result("job-1"));
    await a.put(result("../../etc/passwd"));
    const files = readdirSync(dir).filter((f) => f.endsWith(".json"));
    expect(files).toHaveLength(2);
    for (const f of files) expect(statSync(join(dir, f)).mode & 0o777).toBe(0o600);

    const b = new Outbox(dir);
    await b.open();
    const { results } = await b.pending();
    expect(results.map((r) => r.jobId).sort()).toEqual(["../../etc/passwd", "job-1"]);
    await b.remove("job-1");
    expect(await b.depth()).toBe(1);
  });

  it("moves an unreadable entry aside instead of crashing or deleting it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "outbox-"));
    const o = new Outbox(dir);
    await o.open();
    await o.put(result("good"));
    writeFileSync(join(dir, "broken.json"), "{not json");
    const { results, corrupt } = await o.pending();
    expect(results.map((r) => r.jobId)).toEqual(["good"]);
    expect(corrupt).toHaveLength(1);
    expect(readdirSync(dir)).toContain("broken.json.corrupt");
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
    expect((await new ClaimJournal(dir).entries()).jobs.map((e) => e.jobId)).toEqual(["j1"]);
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
