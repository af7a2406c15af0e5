// A one-process host (one GPU: no supervisor) drains its sick card and alerts like a fleet: one
// fake card, the local coordinator over real HTTP, a loopback webhook. An Xid 79 while it runs a
// job: the job fails with gpu_unavailable, the miner deregisters, /readyz is 503 and says why, one
// "drained" alert; `gpu undrain 0` brings a new miner (it registers anew and runs the requeued job)
// and a "back" alert. `gpu drain 0` by the operator survives a restart: the next start does not
// register until `gpu undrain 0`.
import { describe, expect, it } from "vitest";
import { appendFakeEvents, EVENT_XID } from "../fake-nvml/config.js";
import { runCli } from "../support/cli.js";
import { drainRig, get, until } from "../support/fleet.js";
import { hostTestParts } from "../support/webhook.js";

const t = hostTestParts();

describe("a one-GPU host drains its sick card", () => {
  it("Xid 79 mid-job: job failed gpu_unavailable, deregistered, /readyz says why, one alert; undrain brings a new miner; the operator's drain survives a restart", {
    timeout: 300_000,
  }, async () => {
    const { coordinator, hook, events, eventsFile, port, base, start } = await drainRig(t, "drain-one");
    const host = start(1);
    const registered = () => coordinator.miners().map((m) => m.minerId);
    await until("registered", () => (registered().length === 1 ? true : null));
    const id = registered()[0]!;
    expect(host.stderr()).not.toContain("alert_webhook_unused");
    await until("readyz 200", async () => ((await get(`${base}/readyz`)).status === 200 ? true : null));

    const long = coordinator.enqueue({
      payload: { model: "tiny", prompt: "a long one", max_tokens: 480, temperature: 0 },
    });
    await until("the job running", () => (/"event":"job_started"/.test(host.stderr()) ? true : null));
    appendFakeEvents(eventsFile, [{ index: 0, type: EVENT_XID, data: 79 }]);
    await until("deregistered", () =>
      events.some((e) => e.type === "deregistered" && e.minerId === id) ? true : null,
    );
    expect(events.find((e) => e.type === "failed" && e.jobId === long)).toMatchObject({
      minerId: id,
      errorCode: "gpu_unavailable",
      requeued: true,
    });
    const ready = await get(`${base}/readyz`);
    expect(ready.status).toBe(503);
    const why = (JSON.parse(ready.text) as { drained: Record<string, string> }).drained[id];
    expect(why).toMatch(/^GPU 0 drained: Xid 79/);
    expect((await get(`${base}/healthz`)).status).toBe(200); // alive: it waits for the undrain
    expect((await get(`${base}/metrics`)).text).toMatch(
      /aitbc_gpu_health\{gpu="0",UUID="[^"]+",state="lost"\} 1/,
    );
    await until("the drain alert", () => (hook.bodies.length > 0 ? true : null));
    const drainAlerts = () => hook.bodies.filter((b) => b["alert"] === "drained");
    expect(drainAlerts()).toHaveLength(1);
    expect(String(drainAlerts()[0]!["text"])).toContain(`${id}: GPU 0 drained: Xid 79`);
    expect(JSON.stringify(hook.bodies)).not.toContain("test-key");

    const undrain = await runCli(["gpu", "undrain", "0", "--metrics-port", String(port)]);
    expect(undrain.stderr).toBe("");
    expect(undrain.code).toBe(0);
    await until("registered again", () => (registered().includes(id) ? true : null));
    await until("the requeued job completed", () =>
      coordinator.job(long)?.state === "COMPLETED" ? true : null,
    );
    await until("the back alert", () => (hook.bodies.some((b) => b["alert"] === "back") ? true : null));
    await until("readyz 200 again", async () => ((await get(`${base}/readyz`)).status === 200 ? true : null));

    // The operator's drain, then a restart on the same state: still drained until undrained.
    const drain = await runCli(["gpu", "drain", "0", "--metrics-port", String(port)]);
    expect(drain.stdout).toBe(`${id} is drained: GPU 0 drained by the operator\n`);
    await until("deregistered by the operator's drain", () => (registered().length === 0 ? true : null));
    host.child.kill("SIGTERM");
    expect((await host.exit).code).toBe(0);

    const again = start(1, host.stateDir);
    await until("readyz answers 503 with the kept drain", async () => {
      const r = await get(`${base}/readyz`);
      return r.status === 503 && r.text.includes("drained by the operator") ? true : null;
    });
    expect(again.stderr()).toContain('"event":"gpu_drains_restored"');
    expect(registered()).toEqual([]);
    expect((await runCli(["gpu", "undrain", "0", "--metrics-port", String(port)])).code).toBe(0);
    await until("registered after the undrain", () => (registered().includes(id) ? true : null));
    again.child.kill("SIGTERM");
    expect((await again.exit).code).toBe(0);
  });
});
