// Why no jobs, as one line: the verdict for each case an operator meets, from counters built by
// the same code that counts the workers' MinerEvents, over a sliding window.
import { describe, expect, it } from "vitest";
import type { MinerEvent } from "../../src/ops/events.js";
import {
  count,
  emptyCounters,
  type StatusCounters,
  type StatusFacts,
  StatusWindow,
  statusVerdict,
} from "../../src/ops/status.js";

const facts = (over: Partial<StatusFacts> = {}): StatusFacts => ({
  workers: 1,
  windowMs: 10 * 60_000,
  drained: null,
  stateWritable: true,
  credentialsRefused: false,
  gaveUp: null,
  ...over,
});

function counted(events: [MinerEvent, number][]): StatusCounters {
  const c = emptyCounters();
  for (const [e, n] of events) for (let i = 0; i < n; i++) count(c, e);
  return c;
}

const poll = (result: "job" | "empty" | "unusable" | "rate_limited" | "error"): MinerEvent => ({
  type: "poll",
  result,
});

describe("statusVerdict", () => {
  it("no work for our models: empty polls, nothing handed out", () => {
    expect(statusVerdict(counted([[poll("empty"), 412]]), facts())).toBe(
      "the coordinator had no work for your models in 412 polls",
    );
  });

  it("rate limited, shared by the host's workers", () => {
    const c = counted([
      [poll("rate_limited"), 30],
      [poll("empty"), 70],
    ]);
    expect(statusVerdict(c, facts({ workers: 4 }))).toBe(
      "polls refused: rate limit shared by 4 workers (30 of 100 polls answered 429)",
    );
    expect(statusVerdict(c, facts())).toBe("polls refused: rate limit (30 of 100 polls answered 429)");
    // A few 429s among many answered polls are not the story.
    expect(
      statusVerdict(
        counted([
          [poll("rate_limited"), 2],
          [poll("empty"), 98],
        ]),
        facts(),
      ),
    ).toMatch(/no work/);
  });

  it("a drained card says why, before anything its counters say", () => {
    const why = "GPU 2 drained: Xid 79: GPU has fallen off the bus";
    expect(statusVerdict(counted([[poll("empty"), 5]]), facts({ drained: why }))).toBe(why);
  });

  it("state directory full", () => {
    expect(statusVerdict(counted([[poll("job"), 3]]), facts({ stateWritable: false }))).toBe(
      "state directory full or read-only: mining paused until it takes writes",
    );
  });

  it("the coordinator refuses our credentials, first of all", () => {
    expect(
      statusVerdict(emptyCounters(), facts({ credentialsRefused: true, gaveUp: 2, stateWritable: false })),
    ).toBe("the coordinator refuses our credentials (check --api-key-file and --miner-id)");
  });

  it("coordinator errors, refusals, failures, a worker that gave up, no polls, mining", () => {
    expect(
      statusVerdict(
        counted([
          [poll("error"), 6],
          [poll("empty"), 4],
        ]),
        facts(),
      ),
    ).toBe("the coordinator fails our polls (6 of 10 errors or timeouts)");
    const refused = counted([
      [poll("job"), 3],
      [{ type: "job_failed", errorCode: "model_not_found" }, 3],
    ]);
    expect(refused.refused).toEqual({ model_not_found: 3 });
    expect(statusVerdict(refused, facts())).toBe(
      "jobs handed out but refused here: 3 (most: model_not_found)",
    );
    const failing = counted([
      [poll("job"), 4],
      [{ type: "job_failed", errorCode: "inference_failed" }, 3],
      [{ type: "job_completed", durationMs: 10, completionTokens: 1 }, 1],
    ]);
    expect(statusVerdict(failing, facts())).toBe("jobs fail: 3 of 4 (most: inference_failed)");
    expect(statusVerdict(emptyCounters(), facts({ gaveUp: 73 }))).toBe(
      "the worker gave up (exit 73): see its log",
    );
    expect(statusVerdict(emptyCounters(), facts())).toBe(
      "no polls in the last 10 min (starting, or every slot busy)",
    );
    const mining = counted([
      [poll("job"), 2],
      [poll("empty"), 9],
      [{ type: "job_completed", durationMs: 10, completionTokens: 1 }, 2],
      [{ type: "result_delivered", answer: "accepted" }, 2],
    ]);
    expect(statusVerdict(mining, facts())).toBe("mining: 2 jobs completed, 2 results accepted in 10 min");
  });
});

describe("StatusWindow", () => {
  it("counts only the last window's events, per worker", () => {
    let now = 1_000_000;
    const w = new StatusWindow(60_000, () => now);
    w.add("a", poll("empty"));
    now += 30_000;
    w.add("a", poll("job"));
    w.add("b", poll("rate_limited"));
    expect(w.counters("a")).toMatchObject({ polls: 2, emptyPolls: 1, handouts: 1 });
    now += 40_000; // the first poll left the window
    expect(w.counters("a")).toMatchObject({ polls: 1, emptyPolls: 0, handouts: 1 });
    expect(w.counters("b")).toMatchObject({ polls: 1, rateLimited: 1 });
    expect(w.lastHandout("a")).toBe(1_030_000);
    now += 60_000;
    expect(w.counters("a").polls).toBe(0);
  });
});
