// Heartbeats go through the one retry rule: a failed one comes back on the rule's backoff (well
// before a long interval), a 404 registers the miner again, and the schedule's interval is still
// the longest a beat ever waits.
import { afterEach, describe, expect, it } from "vitest";
import { Miner } from "../../src/miner/loop.js";
import { answer, scriptedBackend } from "../support/backends.js";
import { captureLog } from "../support/log-lines.js";
import { testMinerDeps } from "../support/miner-deps.js";
import {
  defaultReply,
  type ScriptedCoordinator,
  startScriptedCoordinator,
} from "../support/scripted-coordinator.js";

let coordinator: ScriptedCoordinator | null = null;
afterEach(async () => {
  await coordinator?.close();
  coordinator = null;
});

/** Ten minutes: a second beat within the test's deadline can only be a retry. */
const LONG_INTERVAL_MS = 600_000;

/** Mine against `c` until `until` holds, then stop cleanly; the log's events of that run. */
async function mineUntil(c: ScriptedCoordinator, until: () => boolean) {
  const { log, events } = captureLog();
  const deps = testMinerDeps({
    url: c.url,
    backend: scriptedBackend("m", async (req) => answer(req, "ok", 1)),
    settings: { heartbeatIntervalMs: LONG_INTERVAL_MS, idlePollIntervalMs: 200 },
  });
  deps.log = log;
  const miner = new Miner(deps);
  const done = miner.run();
  await c.waitFor(until, 60_000);
  await miner.shutdown("test over");
  expect((await done).code).toBe(0);
  return events;
}

describe("heartbeats and the retry rule", () => {
  it("a failed heartbeat is sent again on the rule's backoff, not a whole interval later", async () => {
    let failures = 2;
    coordinator = await startScriptedCoordinator((req) => {
      if (req.path.endsWith("/heartbeat") && failures > 0) {
        failures--;
        return { status: 503, json: { detail: "busy" } };
      }
      return defaultReply(req);
    });
    const c = coordinator;
    const events = await mineUntil(c, () => c.calls("/heartbeat").length >= 3);

    const failed = events("heartbeat_failed");
    expect(failed).toHaveLength(2);
    for (const f of failed) {
      expect(f["retryInMs"]).toEqual(expect.any(Number));
      expect(f["retryInMs"] as number).toBeLessThan(LONG_INTERVAL_MS);
    }
    // Once one got through, the next waits for the interval again: no fourth beat came.
    expect(c.calls("/heartbeat")).toHaveLength(3);
  });

  it("a heartbeat's 404 registers the miner again", async () => {
    let forgotten = true;
    coordinator = await startScriptedCoordinator((req) => {
      if (req.path.endsWith("/heartbeat") && forgotten) {
        forgotten = false;
        return { status: 404, json: { detail: "unknown miner" } };
      }
      return defaultReply(req);
    });
    const c = coordinator;
    const events = await mineUntil(c, () => c.calls("/register").length >= 2);
    expect(events("reregister")).toHaveLength(1);
    expect(events("heartbeat_failed")).toHaveLength(0);
  });
});
