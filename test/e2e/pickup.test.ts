// Polling spends the coordinator's budget where it buys latency: at the reference limits an idle
// miner never draws a 429 and still picks up jobs arriving one at a time; against a coordinator
// that holds polls, the miner waits in the poll itself. (Pickup times are measured in bench/.)
import { describe, expect, it } from "vitest";
import { coordinatorWithReceipts, inferenceJob, minerConfig, startMiner } from "../support/harness.js";

describe("poll budget and long-poll", () => {
  it("at the reference 100 polls/min: no 429 while idle or while jobs trickle in", async () => {
    const { coordinator } = await coordinatorWithReceipts({
      rateLimits: { register: 50, heartbeat: 100, poll: 100, result: 50 },
    });
    let limited = 0;
    coordinator.on((e) => {
      if (e.type === "rate_limited") limited++;
    });
    // No test overrides: the miner polls exactly as `run` does.
    const miner = await startMiner(
      minerConfig(coordinator.url, { heartbeatInterval: 15, longPoll: 0 }),
      undefined,
      {
        flushTimeoutMs: 3000,
        abortGraceMs: 3000,
      },
    );
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 700));
      ids.push(coordinator.enqueue(inferenceJob(i)));
    }
    await coordinator.waitFor((c) => ids.every((id) => c.job(id)!.state === "COMPLETED"), 60_000);
    expect((await miner.stop()).code).toBe(0);
    expect(limited).toBe(0);
    const polls = coordinator.stats();
    expect(polls.rateLimited).toBe(0);
    await coordinator.close();
  });

  it("a coordinator that holds polls answers the held poll when a job arrives", async () => {
    const { coordinator } = await coordinatorWithReceipts({ longPollMaxSeconds: 300 });
    // Polls that have arrived: every request counts on arrival, a route only once answered (a held
    // poll later), and the other routes are answered at once. No wall clock decides below.
    const pollsSoFar = () => {
      const s = coordinator.stats();
      const others = Object.entries(s.byRoute).filter(([route]) => route !== "POST /v1/miners/poll");
      return s.requests - others.reduce((sum, [, n]) => sum + n, 0);
    };
    let pollsAtAssign = -1;
    coordinator.on((e) => {
      if (e.type === "assigned") pollsAtAssign = pollsSoFar();
    });
    const miner = await startMiner(
      minerConfig(coordinator.url, { longPoll: 300, heartbeatInterval: 3600 }),
      undefined,
      {
        pollMinIntervalMs: 600,
        longPollSeconds: 300,
        flushTimeoutMs: 3000,
        abortGraceMs: 3000,
      },
    );
    // The first poll (after warm-up, however long that takes on a busy machine) is held: in the
    // next 2 s no other arrives, where a miner not holding would poll every 600 ms.
    await coordinator.waitFor(() => pollsSoFar() >= 1, 60_000);
    const pollsAtEnqueue = pollsSoFar();
    await new Promise((r) => setTimeout(r, 2000));
    expect(pollsSoFar()).toBe(pollsAtEnqueue);
    const id = coordinator.enqueue(inferenceJob(1));
    await coordinator.waitFor((c) => c.job(id)!.state === "COMPLETED", 60_000);
    // Handed over by the poll already held open: no poll arrived between enqueue and hand-out.
    expect(pollsAtAssign).toBe(pollsAtEnqueue);
    // SIGTERM with a poll held open (for up to 300 s) stops without waiting it out: the poll is
    // aborted. The bound is far from both the design (at once) and the hold.
    await coordinator.waitFor(() => pollsSoFar() > pollsAtAssign, 60_000);
    const t0 = performance.now();
    expect((await miner.stop()).code).toBe(0);
    expect(performance.now() - t0).toBeLessThan(150_000);
    await coordinator.close();
  }, 240_000);
});
