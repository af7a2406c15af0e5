// The reporter alone, with a fake coordinator client and a real outbox and journal on disk: each
// answer a coordinator can give to a result or a failure report, and what is left behind.
import { mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CoordinatorError } from "../../src/coordinator/errors.js";
import type { CompletedJob, CoordinatorClient, SubmitAck } from "../../src/coordinator/types.js";
import { silentLogger } from "../../src/log.js";
import { ClaimJournal } from "../../src/miner/journal.js";
import { Outbox } from "../../src/miner/outbox.js";
import { Reporter } from "../../src/miner/reporter.js";
import type { MinerEvent } from "../../src/ops/events.js";
import { completed } from "../support/coordinator.js";

type Answer = SubmitAck | CoordinatorError;

/** A client whose submit/fail answers come from scripts, recording every call. */
function fakeClient(submits: Answer[], fails: (CoordinatorError | null)[]) {
  const calls: string[] = [];
  const client = {
    protocol: "aitbc",
    async submit(r: CompletedJob) {
      calls.push(`submit ${r.jobId}`);
      const a = submits.shift() ?? { status: 200, coordinatorReceiptText: null };
      if (a instanceof CoordinatorError) throw a;
      return a;
    },
    async fail(jobId: string, code: string) {
      calls.push(`fail ${jobId} ${code}`);
      const a = fails.shift() ?? null;
      if (a) throw a;
    },
  } as unknown as CoordinatorClient;
  return { client, calls };
}

async function setup(submits: Answer[] = [], fails: (CoordinatorError | null)[] = []) {
  const dir = mkdtempSync(join(tmpdir(), "reporter-"));
  const outbox = new Outbox(join(dir, "outbox"));
  const journal = new ClaimJournal(join(dir, "journal"));
  await outbox.open();
  await journal.open();
  const { client, calls } = fakeClient(submits, fails);
  const events: MinerEvent[] = [];
  const acked: string[] = [];
  const reporter = new Reporter({
    client,
    outbox,
    journal,
    log: silentLogger(),
    checkCoordinatorReceipt: () => ({ verified: null, receipt: null }),
    recordReceipt: async () => {},
    onEvent: (e) => events.push(e),
    onFailureAcknowledged: (id) => acked.push(id),
  });
  // What the stores hold (a removal is in effect at once, on disk with the next write).
  const files = async (sub: "outbox" | "journal") =>
    sub === "outbox"
      ? (await outbox.pending()).results.map((r) => r.jobId)
      : (await journal.entries()).jobs.map((j) => j.jobId);
  return { reporter, outbox, journal, calls, events, acked, files, dir };
}

async function deliver(t: Awaited<ReturnType<typeof setup>>, r: CompletedJob): Promise<void> {
  await t.outbox.put(r);
  t.reporter.submit(r);
  await t.reporter.flush(5000);
}

const err = (kind: "not_found" | "conflict" | "client" | "server", status: number) =>
  new CoordinatorError(kind, `HTTP ${status}`, status);

describe("Reporter", () => {
  it("an acknowledged result leaves the outbox", async () => {
    const t = await setup();
    await deliver(t, completed("j1"));
    expect(await t.files("outbox")).toEqual([]);
    expect(t.events).toContainEqual({ type: "result_delivered", answer: "accepted" });
    expect(t.reporter.snapshot()).toMatchObject({ submitted: 1, pendingResults: 0 });
  });

  it("retries a 5xx, then counts a 409 as already done", async () => {
    const t = await setup([err("server", 503), err("conflict", 409)]);
    await deliver(t, completed("j2"));
    expect(t.calls).toEqual(["submit j2", "submit j2"]);
    expect(await t.files("outbox")).toEqual([]);
    expect(t.events).toContainEqual({ type: "result_delivered", answer: "already_done" });
  });

  it("a 404 drops the result: the job is gone", async () => {
    const t = await setup([err("not_found", 404)]);
    await deliver(t, completed("j3"));
    expect(await t.files("outbox")).toEqual([]);
    expect(t.reporter.snapshot().dropped).toBe(1);
  });

  it("a 4xx keeps the result under rejected/ and fails the job as result_rejected", async () => {
    const t = await setup([err("client", 422)]);
    await deliver(t, completed("j4"));
    // The failure report starts once the refusal is in: wait for its acknowledgement.
    for (let i = 0; i < 100 && t.acked.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await t.files("outbox")).toEqual([]);
    expect(readdirSync(join(t.dir, "outbox", "rejected"))).toHaveLength(1);
    expect(t.calls).toEqual(["submit j4", "fail j4 result_rejected"]);
    expect(t.acked).toEqual(["j4"]);
    expect(await t.files("journal")).toEqual([]);
  });

  it("a failure is journaled until acknowledged, then an early heartbeat is asked for", async () => {
    const t = await setup([], [err("server", 500)]);
    await t.reporter.fail("j5", "timeout", "too slow");
    expect(await t.files("journal")).toHaveLength(1);
    await t.reporter.flush(5000);
    expect(t.calls).toEqual(["fail j5 timeout", "fail j5 timeout"]);
    expect(await t.files("journal")).toEqual([]);
    expect(t.acked).toEqual(["j5"]);
    expect(t.events).toContainEqual({ type: "job_failed", errorCode: "timeout" });
  });

  it("a superseded failure report stops and never removes a later hand-out's journal entry", async () => {
    const t = await setup(
      [],
      Array.from({ length: 50 }, () => err("server", 503)),
    );
    await t.reporter.fail("j6", "timeout", "too slow");
    expect(t.reporter.isFailing("j6")).toBe(true);
    await t.reporter.supersede("j6");
    expect(t.reporter.isFailing("j6")).toBe(false);
    await t.journal.record({
      jobId: "j6",
      payload: { model: "m" },
      constraints: {},
      claimedAt: 1,
      deadlineAt: 2,
    });
    await new Promise((r) => setTimeout(r, 300));
    expect((await t.journal.entries()).jobs.map((j) => j.failure ?? null)).toEqual([null]);
    expect(t.acked).toEqual([]);
  });

  it("what flush cannot deliver in time stays on disk for the next start", async () => {
    const t = await setup(
      Array.from({ length: 50 }, () => err("server", 503)),
      Array.from({ length: 50 }, () => err("server", 503)),
    );
    await t.outbox.put(completed("j7"));
    t.reporter.submit(completed("j7"));
    await t.reporter.fail("j8", "timeout", "too slow");
    await t.reporter.flush(300);
    expect(await t.files("outbox")).toHaveLength(1);
    expect(await t.files("journal")).toHaveLength(1);
  });
});
