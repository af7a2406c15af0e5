// The claim journal's one conditional step: a failure verdict leaves once acknowledged, but a new
// hand-out of the same id journaled meanwhile must stay (src/miner/journal.ts).
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type ClaimedJob, ClaimJournal } from "../../src/miner/journal.js";

const made: ClaimJournal[] = [];
afterEach(async () => {
  for (const j of made.splice(0)) await j.close();
});

async function journal(dir = mkdtempSync(join(tmpdir(), "journal-"))): Promise<ClaimJournal> {
  const j = new ClaimJournal(dir);
  made.push(j);
  await j.open();
  return j;
}

const claim = (jobId: string, claimedAt: number, failure?: ClaimedJob["failure"]): ClaimedJob => ({
  jobId,
  payload: { prompt: "p" },
  constraints: {},
  claimedAt,
  deadlineAt: claimedAt + 60_000,
  ...(failure ? { failure } : {}),
});

async function reopened(j: ClaimJournal): Promise<ClaimedJob[]> {
  await j.close();
  const again = await journal(j.dir);
  return (await again.entries()).jobs;
}

describe("claim journal", () => {
  it("removeFailure removes a failure verdict, and leaves a plain claim", async () => {
    const j = await journal();
    await j.record(claim("failed", 1, { errorCode: "timeout", message: "too slow" }));
    await j.record(claim("running", 2));
    await j.removeFailure("failed");
    await j.removeFailure("running");
    await j.removeFailure("never-seen");
    expect((await reopened(j)).map((c) => c.jobId)).toEqual(["running"]);
  });

  it("a hand-out of the same id journaled while its old verdict's removal is decided is kept", async () => {
    const j = await journal();
    await j.record(claim("job-1", 1, { errorCode: "timeout", message: "too slow" }));
    // The coordinator acknowledged the verdict and handed the job out again at once: the new
    // claim is journaled while the removal is still reading what the journal holds. (The loop
    // also waits for the report to end before it runs the new hand-out; the journal does not
    // rely on that.)
    const removing = j.removeFailure("job-1");
    const recording = j.record(claim("job-1", 2));
    await Promise.all([removing, recording]);
    const left = await reopened(j);
    expect(left).toHaveLength(1);
    expect(left[0]?.claimedAt).toBe(2);
    expect(left[0]?.failure).toBeUndefined();
  });
});
