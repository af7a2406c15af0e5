// A lone miner whose --polls-per-minute is above what the coordinator allows: the first 429 holds
// polling just as long as it must (the Retry-After when given, else until the window has room,
// never a blind window more), is logged once and not as a poll failure, and teaches a budget
// under which no 429 follows; jobs are still picked up after it.
import { describe, expect, it } from "vitest";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { Miner } from "../../src/miner/loop.js";
import { answer, scriptedBackend } from "../support/backends.js";
import { closeAfterEach } from "../support/cleanup.js";
import { coordinatorWithReceipts } from "../support/harness.js";
import { captureLog } from "../support/log-lines.js";
import { testMinerDeps } from "../support/miner-deps.js";
import { type FaultProxy, startFaultProxy } from "../support/proxy.js";

const closeLater = closeAfterEach();
let coordinator: LocalCoordinator | null = null;
let proxy: FaultProxy | null = null;

const POLL = "POST /v1/miners/poll";
const WINDOW_MS = 3000;
const LIMIT = 20;

describe("a 429 on a lone miner", () => {
  it.each([
    ["with Retry-After", true],
    ["without Retry-After", false],
  ])("%s: one hold, one log line, no 429 after it, jobs still picked up", async (_, retryAfter) => {
    coordinator = closeLater(
      (
        await coordinatorWithReceipts({
          rateLimits: { register: 1000, heartbeat: 1000, poll: LIMIT, result: 1000, windowMs: WINDOW_MS },
        })
      ).coordinator,
    );
    const c = coordinator;
    const limited: number[] = [];
    c.on((e) => {
      if (e.type === "rate_limited" && e.route === "poll") limited.push(e.retryAfterMs);
    });
    proxy = closeLater(
      await startFaultProxy(c.url, [], 0, { dropResponseHeaders: retryAfter ? [] : ["retry-after"] }),
    );
    const { log, events } = captureLog();
    const deps = testMinerDeps({
      url: proxy.url,
      backend: scriptedBackend("m", async (req) => answer(req, "ok", 5)),
      minerId: "m429",
      // Three times what the coordinator allows, evenly spaced: the 21st poll, ~1 s in, is refused.
      settings: { pollsPerWindow: 3 * LIMIT, pollWindowMs: WINDOW_MS, idlePollIntervalMs: 50 },
    });
    deps.log = log;
    const miner = new Miner(deps);
    const done = miner.run();
    const polls = () => c.stats().byRoute[POLL] ?? 0;
    // Four windows' worth at the allowed rate: long enough for a second 429 if one were coming.
    await c.waitFor(() => polls() >= LIMIT + 1 + 4 * LIMIT * 0.9 - 2, 60_000);
    const id = c.enqueue({ payload: { model: "m", prompt: "p" } });
    await c.waitFor((x) => x.job(id)?.state === "COMPLETED", 60_000);
    await miner.shutdown("test over");
    expect((await done).code).toBe(0);

    expect(limited).toHaveLength(1);
    const said = events("poll_rate_limited");
    expect(said).toHaveLength(1);
    expect(said[0]!["retryAfterMs"]).toBe(retryAfter ? Math.ceil(limited[0]! / 1000) * 1000 : null);
    // Held within the window it was refused in (plus the slack), not a blind minute.
    expect(said[0]!["holdMs"] as number).toBeGreaterThan(0);
    expect(said[0]!["holdMs"] as number).toBeLessThanOrEqual(WINDOW_MS + 250);
    // Learned: 20 were taken, so spend ~10 % under that.
    expect(said[0]!["pollsPerWindow"]).toBe(18);
    expect(events("poll_failed")).toHaveLength(0);
  });
});
