// The host's poll budget across the IPC channel, both ends in process with the messages going
// through the same validation as between processes: workers' requests granted in turn, a cancel
// or a worker's exit freeing its place, a 429 from one worker holding the others, and malformed
// messages refused both ways.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  type PollGrantMessage,
  type PollMessage,
  parseSupervisorMessage,
  parseWorkerMessage,
} from "../../src/fleet/ipc.js";
import { PollShare } from "../../src/fleet/poll-share.js";
import { SharedPollBudget } from "../../src/fleet/shared-budget.js";
import { silentLogger } from "../../src/log.js";

/** Worker `name`'s budget, wired to the share through JSON and the parsers, as over IPC. */
function worker(share: PollShare, name: string): SharedPollBudget {
  const budget: SharedPollBudget = new SharedPollBudget((m: PollMessage) => {
    const msg = parseWorkerMessage(JSON.parse(JSON.stringify(m)));
    if (!msg || msg.t === "event" || msg.t === "status") throw new Error(`refused: ${JSON.stringify(m)}`);
    share.handle(name, msg, (g: PollGrantMessage) => {
      const grant = parseSupervisorMessage(JSON.parse(JSON.stringify(g)));
      if (grant?.t === "poll_grant") queueMicrotask(() => budget.granted(grant));
    });
  });
  return budget;
}

const SETTINGS = { perWindow: 18, windowMs: 5000, spacingMs: 278 };

describe("the host's poll budget over IPC", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("grants the workers that ask in turn, one per spacing; a cancelled request or an exited worker leaves the queue", async () => {
    const share = new PollShare(SETTINGS, silentLogger());
    const [a, b, c] = ["gpu0", "gpu1", "gpu2"].map((n) => worker(share, n));
    const order: string[] = [];
    const never = new AbortController().signal;
    const ask = (w: SharedPollBudget, name: string, signal = never) =>
      w.acquire({ signal, want: 1, backlog: false }).then((n) => {
        if (n > 0) order.push(name);
        return n;
      });
    const first = [ask(a!, "gpu0"), ask(b!, "gpu1")];
    const leaving = new AbortController();
    const cancelled = ask(c!, "gpu2", leaving.signal);
    await vi.advanceTimersByTimeAsync(1);
    expect(order).toEqual(["gpu0"]); // one at once; the next waits for the spacing
    leaving.abort();
    expect(await cancelled).toBe(0);
    await vi.advanceTimersByTimeAsync(278);
    expect(order).toEqual(["gpu0", "gpu1"]);
    await Promise.all(first);
    expect(share.queued).toBe(0);
    // A worker that exits with a request waiting takes it out of the queue.
    void ask(c!, "gpu2");
    const behind = ask(a!, "gpu0");
    share.forget("gpu2");
    await vi.advanceTimersByTimeAsync(278);
    expect(await behind).toBe(1);
    expect(order).toEqual(["gpu0", "gpu1", "gpu0"]);
    expect(share.queued).toBe(0);
  });

  it("a 429 seen by one worker holds every worker for its Retry-After", async () => {
    const share = new PollShare(SETTINGS, silentLogger());
    const [a, b] = ["gpu0", "gpu1"].map((n) => worker(share, n));
    const s = new AbortController().signal;
    expect(await a!.acquire({ signal: s, want: 1, backlog: false })).toBe(1);
    a!.rateLimited(3000);
    let granted = false;
    void b!.acquire({ signal: s, want: 3, backlog: true }).then((n) => {
      granted = n === 3;
    });
    await vi.advanceTimersByTimeAsync(2990);
    expect(granted).toBe(false);
    await vi.advanceTimersByTimeAsync(20);
    expect(granted).toBe(true); // a backlog: every free slot's poll at once when the hold ends
  });

  it("refuses malformed poll messages both ways", () => {
    for (const bad of [
      { t: "poll_ask", id: 1, want: 0, backlog: false },
      { t: "poll_ask", id: -1, want: 1, backlog: false },
      { t: "poll_ask", id: 1, want: 1 },
      { t: "poll_cancel", id: "1" },
      { t: "poll_429", retryAfterMs: -5 },
      { t: "poll_429" },
      { t: "poll_grant", id: 1, n: 1 },
    ]) {
      expect(parseWorkerMessage(bad), JSON.stringify(bad)).toBeNull();
    }
    expect(parseWorkerMessage({ t: "poll_429", retryAfterMs: null })).toEqual({
      t: "poll_429",
      retryAfterMs: null,
    });
    for (const bad of [
      { t: "poll_grant", id: 1, n: 0 },
      { t: "poll_grant", id: 1.5, n: 1 },
      { t: "poll_ask" },
      null,
    ]) {
      expect(parseSupervisorMessage(bad), JSON.stringify(bad)).toBeNull();
    }
  });
});
