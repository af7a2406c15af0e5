// How many polls a round sends, and how their outcomes are sorted, with a scripted client.
import { describe, expect, it } from "vitest";
import { dialectTraits } from "../../src/coordinator/dialects.js";
import { CoordinatorError, UnusableJobError } from "../../src/coordinator/errors.js";
import type { CoordinatorClient, Job } from "../../src/coordinator/types.js";
import { pollRound, pollsWanted } from "../../src/miner/poll-round.js";

function client(protocol: "aitbc" | "claim", answers: (Job | null | Error)[]) {
  const waits: number[] = [];
  const c = {
    protocol,
    traits: dialectTraits(protocol),
    async poll(maxWaitSeconds: number) {
      waits.push(maxWaitSeconds);
      const a = answers.shift() ?? null;
      if (a instanceof Error) throw a;
      return a;
    },
  } as unknown as CoordinatorClient;
  return { c, waits };
}

const job = (id: string): Job => ({ jobId: id, payload: { model: "m", prompt: "p" }, constraints: {} });
const opts = {
  longPollSeconds: 20,
  polls: 4,
  backlog: true,
  signal: new AbortController().signal,
};

describe("poll rounds", () => {
  it("idle: one poll, with the long-poll wait", async () => {
    const { c, waits } = client("aitbc", [null]);
    const r = await pollRound(c, { ...opts, polls: 1, backlog: false });
    expect(waits).toEqual([20]);
    expect(r.jobs).toEqual([]);
  });

  it("backlog: one poll per free slot, none of them held open (a held one would delay the jobs the others brought)", async () => {
    const { c, waits } = client("aitbc", [job("a"), job("b"), null, job("c")]);
    const r = await pollRound(c, opts);
    expect(waits).toEqual([0, 0, 0, 0]);
    expect(r.jobs.map((j) => j.jobId)).toEqual(["a", "b", "c"]);
    expect(r.outcomes).toHaveLength(4);
  });

  it("backlog: as many polls as were granted, never more", async () => {
    const { c, waits } = client("aitbc", [job("a"), job("b")]);
    await pollRound(c, { ...opts, polls: 2 });
    expect(waits).toHaveLength(2);
  });

  it("asks for one poll per free slot only in an aitbc backlog", () => {
    expect(pollsWanted(dialectTraits("aitbc"), true, 4)).toBe(4);
    expect(pollsWanted(dialectTraits("aitbc"), false, 4)).toBe(1);
    expect(pollsWanted(dialectTraits("claim"), true, 4)).toBe(1);
  });

  it("the claim dialect polls one at a time even in a backlog", async () => {
    const { c, waits } = client("claim", [job("a")]);
    await pollRound(c, opts);
    expect(waits).toHaveLength(1);
  });

  it("sorts outcomes: jobs, unusable hand-outs to fail back, and the first other error", async () => {
    const unusable = new UnusableJobError("j-bad", "invalid_payload", "bad payload");
    const e1 = new CoordinatorError("server", "HTTP 500", 500);
    const e2 = new CoordinatorError("server", "HTTP 502", 502);
    const { c } = client("aitbc", [job("a"), unusable, e1, e2]);
    const r = await pollRound(c, opts);
    expect(r.jobs.map((j) => j.jobId)).toEqual(["a"]);
    expect(r.unusable).toEqual([unusable]);
    expect(r.error).toBe(e1);
  });
});
