// Alerts through a webhook on loopback: the body (Slack's `text`), deduplication, the rate limit,
// no secret in the body, and a dead or slow webhook that never holds up the caller.
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/log.js";
import { AlertSink } from "../../src/ops/alerts.js";
import { registerSecret } from "../../src/secrets.js";
import { eventually } from "../support/health.js";
import { freePort } from "../support/proxy.js";
import { startWebhook, type Webhook } from "../support/webhook.js";

let hook: Webhook | null = null;
afterEach(async () => {
  await hook?.close();
  hook = null;
});

const log = silentLogger();

describe("AlertSink", () => {
  it("posts Slack-compatible JSON once per key, within the rate limit, without secrets", async () => {
    hook = await startWebhook();
    let now = 0;
    const sink = new AlertSink({
      url: hook.url,
      log,
      host: "rig-1",
      dedupeMs: 60_000,
      perMinute: 3,
      now: () => now,
    });
    registerSecret("sekret-api-key-123");
    expect(sink.send({ key: "drained:w2", text: "GPU 2 drained (key sekret-api-key-123)" })).toBe(true);
    expect(sink.send({ key: "drained:w2", text: "GPU 2 drained again" })).toBe(false); // deduplicated
    expect(sink.send({ key: "crashloop:w1", text: "w1 in a crash loop" })).toBe(true);
    expect(sink.send({ key: "state:w1", text: "state full" })).toBe(true);
    expect(sink.send({ key: "nojob:w3", text: "no job" })).toBe(false); // 3 a minute
    await sink.flush();
    expect(hook.bodies).toHaveLength(3);
    expect(hook.bodies[0]).toEqual({
      text: "rig-1: GPU 2 drained (key [REDACTED])",
      alert: "drained",
      host: "rig-1",
    });
    now += 61_000; // a quiet period later the same key is news again
    expect(sink.send({ key: "drained:w2", text: "GPU 2 drained" })).toBe(true);
    sink.forget("crashloop:w1");
    expect(sink.send({ key: "crashloop:w1", text: "again" })).toBe(true);
    await sink.flush();
    expect(hook.bodies).toHaveLength(5);
  });

  it("a slow or dead webhook never holds up the caller; the queue is bounded", async () => {
    hook = await startWebhook({ delayMs: 60_000 });
    const sink = new AlertSink({
      url: hook.url,
      log,
      host: "h",
      timeoutMs: 300,
      perMinute: 100,
      maxQueue: 2,
    });
    const accepted = Array.from({ length: 5 }, (_, i) => sink.send({ key: `k${i}`, text: "x" }));
    // The first is in flight; two wait; the rest are dropped.
    expect(accepted).toEqual([true, true, true, false, false]);
    await sink.flush(); // each post gave up at its timeout, never waiting for the answer
    expect(hook.answered()).toBe(0);
    await eventually("three posts arrived", () => hook!.bodies.length === 3);

    const dead = new AlertSink({
      url: `http://127.0.0.1:${await freePort()}/`,
      log,
      host: "h",
      timeoutMs: 300,
    });
    expect(dead.send({ key: "a", text: "nobody listens" })).toBe(true);
    await dead.flush(); // fails, logged, nothing thrown
  });
});
