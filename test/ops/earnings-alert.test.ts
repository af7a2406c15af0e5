// "Earnings stalled" and the no-job threshold, through HostWatch to a loopback webhook with a
// clock the test moves: results were accepted, then for the stall period none is although jobs
// complete: one alert per stall, none for a worker that never earned or that did no work, and a
// new stall after earning again is news again. The no-job alert follows its setting.
import { afterEach, describe, expect, it } from "vitest";
import { HostWatch, type HostWatchOptions } from "../../src/fleet/host-watch.js";
import { silentLogger } from "../../src/log.js";
import type { MinerEvent } from "../../src/ops/events.js";
import { eventually } from "../support/health.js";
import { startWebhook, type Webhook } from "../support/webhook.js";

const log = silentLogger();
let hook: Webhook | null = null;
let watch: HostWatch | null = null;
afterEach(async () => {
  await watch?.close();
  await hook?.close();
  watch = null;
  hook = null;
});

/** A HostWatch posting to a loopback webhook, on a clock the test moves (`clock.now`). */
async function startWatch(o: Omit<HostWatchOptions, "log" | "alertWebhook" | "now">) {
  hook = await startWebhook();
  const clock = { now: 5_000_000 };
  watch = new HostWatch({ log, alertWebhook: hook.url, now: () => clock.now, ...o });
  return { hook, watch, clock };
}

const completed: MinerEvent = { type: "job_completed", durationMs: 1000, completionTokens: 8 };
const delivered = (answer: "accepted" | "rejected" | "gone"): MinerEvent => ({
  type: "result_delivered",
  answer,
  ...(answer === "accepted" ? { units: 1, amount: 0.02 } : {}),
});

describe("HostWatch: earnings stalled", () => {
  it("alerts once when results stop being accepted while jobs complete; not for a worker that never earned or idles", async () => {
    const { hook, watch, clock } = await startWatch({
      earningsStalledMs: 60 * 60_000,
      noJobMs: 24 * 60 * 60_000, // out of this test's way
      workers: ["a", "b", "c"].map((k) => ({ key: k, minerId: `rig-${k}`, gpus: k })),
    });
    const texts = () => hook.bodies.map((b) => String(b["text"]));
    // Ten minutes of paid work on a and c; b completes jobs but was never paid (nothing stalled).
    for (let m = 0; m < 10; m++) {
      clock.now += 60_000;
      for (const k of ["a", "b", "c"]) watch.event(k, completed);
      watch.event("a", delivered("accepted"));
      watch.event("b", delivered("rejected"));
      watch.event("c", delivered("accepted"));
    }
    // Then a goes on completing jobs whose results are rejected; c stops getting work at all.
    let n = 0;
    const minute = () => {
      clock.now += 60_000;
      watch.event("a", completed);
      watch.event("a", delivered(n++ % 2 === 0 ? "rejected" : "gone"));
      watch.event("b", completed);
      watch.event("c", { type: "poll", result: "empty" });
      watch.check();
    };
    for (let m = 0; m < 60; m++) minute();
    expect(hook.bodies).toEqual([]); // 60 minutes: not yet
    for (let m = 0; m < 5; m++) minute();
    await eventually("the earnings alert", () => hook.bodies.length >= 1);
    expect(texts()).toHaveLength(1);
    expect(hook.bodies[0]).toMatchObject({ alert: "earnings" });
    expect(texts()[0]).toMatch(
      /: rig-a: earnings stalled: no result accepted for 60 min although 61 jobs completed \(results: 31 rejected, 30 gone\)$/,
    );

    // Paid again, then stalled again: news again (not held back by the 30 min quiet period).
    watch.event("a", delivered("accepted"));
    for (let m = 0; m < 61; m++) minute();
    await eventually("the second earnings alert", () => hook.bodies.length >= 2);
    expect(texts().filter((t) => t.includes("earnings stalled"))).toHaveLength(2);
    expect(texts().every((t) => t.includes("rig-a"))).toBe(true);
  });

  it("the no-job alert follows its setting (5 min here)", async () => {
    const { hook, watch, clock } = await startWatch({
      noJobMs: 5 * 60_000,
      workers: [{ key: "w", minerId: "rig-w", gpus: "0" }],
    });
    for (let m = 0; m < 4; m++) {
      clock.now += 60_000;
      watch.event("w", { type: "poll", result: "empty" });
      watch.check();
    }
    expect(hook.bodies).toEqual([]);
    clock.now += 60_000;
    watch.event("w", { type: "poll", result: "empty" });
    watch.check();
    await eventually("the no-job alert", () => hook.bodies.length >= 1);
    expect(String(hook.bodies[0]!["text"])).toMatch(/rig-w: no job for 5 min although 5 polls were answered/);
  });
});
