// The poll budget: bursts are fine, no window ever holds more than the limit, and a 429 teaches a
// lower limit to a dialect that published none.
import { describe, expect, it } from "vitest";
import { PollBudget } from "../../src/miner/poll-budget.js";

/** Spend as fast as the budget allows over `ms`, returning the send times. */
function drain(b: PollBudget, from: number, ms: number): number[] {
  const sent: number[] = [];
  let t = from;
  while (t < from + ms) {
    const w = b.waitMs(t);
    if (w > 0) {
      t += w;
      continue;
    }
    b.spend(t);
    sent.push(t);
    t += 1;
  }
  return sent;
}

describe("poll budget", () => {
  it("lets a backlog burst, yet never more than the limit in any window", () => {
    const b = new PollBudget(100, 60_000);
    const sent = drain(b, 0, 300_000);
    expect(sent.slice(0, 100).every((t, i) => t === i)).toBe(true); // the first 100 at once
    for (let i = 100; i < sent.length; i++) expect(sent[i]! - sent[i - 100]!).toBeGreaterThanOrEqual(60_000);
    expect(sent.length).toBeLessThanOrEqual(500 + 100);
  });

  it("an unknown limit never waits; a 429 settles just under what the window held, on evidence only", () => {
    const b = new PollBudget(Number.POSITIVE_INFINITY, 60_000);
    b.learnFrom429(0); // the very first poll limited: no evidence of a limit, nothing learned
    expect(b.perWindow).toBe(Number.POSITIVE_INFINITY);
    for (let t = 0; t < 50; t++) {
      expect(b.waitMs(t)).toBe(0);
      b.spend(t);
    }
    b.learnFrom429(50);
    expect(b.perWindow).toBe(49);
    expect(b.waitMs(51)).toBeGreaterThan(0);
    expect(b.waitMs(60_001)).toBe(0); // the window moved on
    b.learnFrom429(60_002, 3);
    expect(b.perWindow).toBe(49); // a 429 after 3 polls teaches nothing
  });
});
