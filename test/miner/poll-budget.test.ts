// The poll budget: idle polls spread evenly, backlog bursts within the window, the margin under a
// published limit, a 429 holding every poll for its Retry-After or just until the window has room,
// and requests from several pollers (a fleet's workers) granted one at a time in arrival order.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { silentLogger } from "../../src/log.js";
import { hostPollLimit, PollWindow } from "../../src/miner/poll-budget.js";
import { PollGrants } from "../../src/miner/poll-grants.js";
import { POLL_WINDOW_ENV, pollSettings } from "../../src/miner/poll-settings.js";
import { captureLog } from "../support/log-lines.js";

/** Idle polls as fast as the window allows over `ms`, returning the grant times. */
function drainIdle(w: PollWindow, from: number, ms: number): number[] {
  const sent: number[] = [];
  let t = from;
  while (t < from + ms) {
    const wait = w.waitMs(t, false);
    if (wait > 0) {
      t += wait;
      continue;
    }
    expect(w.take(t, 1, false)).toBe(1);
    sent.push(t);
  }
  return sent;
}

/** The most grants in any window of `windowMs` (a window ending at each grant). */
function busiestWindow(times: number[], windowMs: number): number {
  let most = 0;
  for (let i = 0; i < times.length; i++) {
    let n = 0;
    for (let j = i; j >= 0 && times[j]! > times[i]! - windowMs; j--) n++;
    most = Math.max(most, n);
  }
  return most;
}

describe("poll window", () => {
  it("spends ~10 % under a published limit, at least 1", () => {
    expect(hostPollLimit(100)).toBe(90);
    expect(hostPollLimit(20)).toBe(18);
    expect(hostPollLimit(1)).toBe(1);
    expect(hostPollLimit(Number.POSITIVE_INFINITY)).toBe(Number.POSITIVE_INFINITY);
  });

  it("spreads idle polls evenly: one per window/limit, never more than the limit in any window", () => {
    const w = new PollWindow({ perWindow: 90, windowMs: 60_000, spacingMs: 667 });
    const sent = drainIdle(w, 0, 300_000);
    for (let i = 1; i < sent.length; i++) expect(sent[i]! - sent[i - 1]!).toBe(667);
    expect(busiestWindow(sent, 60_000)).toBeLessThanOrEqual(90);
    expect(sent.length).toBe(450);
  });

  it("a backlog bursts past the spacing, yet never past the limit in any window", () => {
    const w = new PollWindow({ perWindow: 18, windowMs: 5000, spacingMs: 278 });
    expect(w.take(0, 1, false)).toBe(1);
    expect(w.waitMs(1, false)).toBeGreaterThan(0); // idle: spaced
    expect(w.take(1, 4, true)).toBe(4); // backlog: at once
    expect(w.take(2, 100, true)).toBe(13); // the window's rest, no more
    expect(w.waitMs(3, true)).toBe(4997); // until the first grant leaves the window
    expect(w.take(5000, 1, true)).toBe(1);
  });

  it("a 429 with Retry-After holds every poll, backlog or idle, for exactly that long", () => {
    const w = new PollWindow({ perWindow: 90, windowMs: 60_000, spacingMs: 667 });
    w.take(0, 1, false);
    const r = w.note429(100, 7000);
    expect(r).toEqual({ holdMs: 7000, fresh: true });
    expect(w.waitMs(100, true)).toBe(7000);
    expect(w.waitMs(7099, false)).toBe(1);
    expect(w.waitMs(7100, false)).toBe(0);
  });

  it("a 429 without Retry-After waits just until the oldest poll leaves the window (plus the arrival slack), never a blind minute", () => {
    const w = new PollWindow({ perWindow: 90, windowMs: 60_000, spacingMs: 667 });
    const sent = drainIdle(w, 0, 40_000); // 60 polls in 40 s: at 0, 667, … 39 353
    expect(sent.length).toBe(60);
    // Someone else behind our IP filled the coordinator's window: 60 in it is over its limit.
    const r = w.note429(40_000, null);
    expect(r.fresh).toBe(true);
    // Learned: the coordinator took fewer than the 60 we sent; spend ~10 % under its 59.
    expect(w.perWindow).toBe(53);
    // Room under the learned 53 once the 8 oldest polls (0 … 4669) have left the window, + the
    // slack: 24.9 s, where a blind backoff would wait a minute.
    expect(r.holdMs).toBe(7 * 667 + 60_000 - 40_000 + 250);
    // Another worker's 429 from the same burst opens no new episode.
    expect(w.note429(40_010, null).fresh).toBe(false);
    expect(w.waitMs(64_918, true)).toBeGreaterThan(0);
    expect(w.waitMs(64_919, true)).toBe(0);
  });

  it("learns a limit only on evidence: a 429 after a handful of polls teaches nothing", () => {
    const w = new PollWindow({ perWindow: Number.POSITIVE_INFINITY, windowMs: 60_000, spacingMs: 0 });
    for (let t = 0; t < 3; t++) w.take(t, 1, false);
    w.note429(3, 1000);
    expect(w.perWindow).toBe(Number.POSITIVE_INFINITY);
  });
});

describe("poll grants", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });
  const clock = () => Date.now();

  it("three pollers share one budget: grants one at a time, evenly spaced, in turn", async () => {
    const g = new PollGrants({ perWindow: 18, windowMs: 5000, spacingMs: 278 }, silentLogger(), clock);
    const stop = new AbortController();
    const grants: { who: number; at: number }[] = [];
    const poller = async (who: number) => {
      while (!stop.signal.aborted) {
        const n = await g.acquire({ signal: stop.signal, want: 1, backlog: false });
        if (n > 0) grants.push({ who, at: Date.now() });
        await Promise.resolve(); // the poll itself, answered at once
      }
    };
    const start = Date.now();
    const runs = [0, 1, 2].map(poller);
    await vi.advanceTimersByTimeAsync(30_000);
    stop.abort();
    await Promise.all(runs);
    const times = grants.map((x) => x.at - start);
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(278);
    expect(busiestWindow(times, 5000)).toBeLessThanOrEqual(18);
    expect(grants.length).toBeGreaterThanOrEqual(6 * 18 - 1);
    // In turn: no poller waits more than two others' grants.
    for (let i = 3; i < grants.length; i++) {
      expect(new Set(grants.slice(i - 3, i).map((x) => x.who)).size).toBe(3);
    }
    expect(g.waiting).toBe(0);
  });

  it("leans to the worker the coordinator hands jobs to, yet the others keep every 6th grant", async () => {
    const g = new PollGrants({ perWindow: 18, windowMs: 5000, spacingMs: 278 }, silentLogger(), clock);
    const stop = new AbortController();
    const grants: string[] = [];
    const poller = async (who: string) => {
      while (!stop.signal.aborted) {
        const n = await g.acquire({ signal: stop.signal, want: 1, backlog: false, who });
        if (n > 0) grants.push(who);
        await Promise.resolve();
      }
    };
    const runs = ["a", "b", "c"].map(poller);
    await vi.advanceTimersByTimeAsync(5_000);
    const before = grants.length;
    g.won("b"); // b's poll brought a job: upstream hands queued jobs to b while b is idle
    await vi.advanceTimersByTimeAsync(20_000);
    stop.abort();
    await Promise.all(runs);
    const after = grants.slice(before);
    expect(after.length).toBeGreaterThanOrEqual(4 * 18 - 2);
    const share = after.filter((w) => w === "b").length / after.length;
    expect(share).toBeGreaterThanOrEqual(0.8);
    expect(share).toBeLessThanOrEqual(0.87);
    // Never more than FAVOUR_RUN (5) favoured grants in a row while the others wait.
    for (let i = 5; i < after.length; i++)
      expect(after.slice(i - 5, i + 1).every((w) => w === "b")).toBe(false);
    // Both others still poll: a wrong guess cannot starve them.
    expect(after).toContain("a");
    expect(after).toContain("c");
  });

  it("an aborted wait grants nothing and leaves the queue", async () => {
    const g = new PollGrants({ perWindow: 18, windowMs: 5000, spacingMs: 278 }, silentLogger(), clock);
    const live = new AbortController();
    expect(await g.acquire({ signal: live.signal, want: 1, backlog: false })).toBe(1);
    const gone = new AbortController();
    const aborted = g.acquire({ signal: gone.signal, want: 1, backlog: false });
    const next = g.acquire({ signal: live.signal, want: 1, backlog: false });
    gone.abort();
    expect(await aborted).toBe(0);
    await vi.advanceTimersByTimeAsync(279);
    expect(await next).toBe(1); // the aborted request took no grant from the one behind it
    expect(g.waiting).toBe(0);
  });

  it("a 429 holds every waiting poller and is logged once per episode", async () => {
    const { log, events } = captureLog();
    const g = new PollGrants({ perWindow: 18, windowMs: 5000, spacingMs: 278 }, log, clock);
    const s = new AbortController().signal;
    expect(await g.acquire({ signal: s, want: 1, backlog: false })).toBe(1);
    g.rateLimited(2000);
    g.rateLimited(2000); // the same burst seen by another worker
    let waitSaid: number | null = -1;
    const waiting = [0, 1, 2].map(() =>
      g.acquire({ signal: s, want: 1, backlog: true, onWait: (ms) => (waitSaid = ms) }),
    );
    let granted = 0;
    for (const w of waiting) void w.then(() => granted++);
    await vi.advanceTimersByTimeAsync(1990);
    expect(granted).toBe(0);
    expect(waitSaid).toBeGreaterThan(0);
    await vi.advanceTimersByTimeAsync(20);
    expect(granted).toBe(3); // backlog requests: all at once when the hold ends
    expect(events("poll_rate_limited")).toHaveLength(1);
    expect(events("poll_rate_limited")[0]).toMatchObject({ level: "warn", retryAfterMs: 2000, holdMs: 2000 });
  });
});

describe("poll settings", () => {
  const cfg = { protocol: "aitbc" as const, pollsPerMinute: 100, longPoll: 20 };

  it("spends ~10 % under --polls-per-minute, idle polls at 70 % of it spaced evenly over the window", () => {
    expect(pollSettings(cfg, {}, {})).toEqual({
      pollsPerWindow: 90,
      pollWindowMs: 60_000,
      idlePollIntervalMs: 953, // 60 000 / (90 × 0.7): the rest is kept for the polls after a job
      longPollSeconds: 20,
    });
    expect(pollSettings({ ...cfg, pollsPerMinute: 20 }, {}, { [POLL_WINDOW_ENV]: "5000" })).toMatchObject({
      pollsPerWindow: 18,
      pollWindowMs: 5000,
      idlePollIntervalMs: 397,
    });
    // The claim dialect publishes no limit: unbounded, spaced by the same setting.
    expect(pollSettings({ ...cfg, protocol: "claim" }, {}, {})).toMatchObject({
      pollsPerWindow: Number.POSITIVE_INFINITY,
      idlePollIntervalMs: 953,
      longPollSeconds: 0,
    });
  });

  it("refuses a window that is not a whole number of milliseconds in range, as a bad setting", () => {
    for (const bad of ["5s", "999", "1e4", "3600001", "-5000"]) {
      expect(() => pollSettings(cfg, {}, { [POLL_WINDOW_ENV]: bad })).toThrow(
        expect.objectContaining({ name: "ConfigError", message: expect.stringContaining(POLL_WINDOW_ENV) }),
      );
    }
  });
});
