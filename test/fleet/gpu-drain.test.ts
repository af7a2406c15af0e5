// A sick card drains itself: four fake cards, one worker each, the local coordinator over real
// HTTP. An Xid 79 on card 2 while it runs a job: its worker fails that job with gpu_unavailable,
// deregisters and stops; the other three go on mining and lose nothing; /readyz, /status, the
// `status` command and aitbc_gpu_health say why; the webhook gets exactly one alert for it;
// `gpu undrain 2` brings the worker back (it registers anew and runs the requeued job). An
// application Xid 13 on card 1 drains nothing; `gpu drain host-gpu3` takes a healthy card out.

import { describe, expect, it } from "vitest";
import { appendFakeEvents, EVENT_XID } from "../fake-nvml/config.js";
import { runCli } from "../support/cli.js";
import { drainRig, get, until } from "../support/fleet.js";
import { inferenceJob } from "../support/harness.js";
import { hostTestParts } from "../support/webhook.js";

const t = hostTestParts();

const L4 = { gpu: "NVIDIA L4" }; // card 2's name in the fleet helper

describe("a sick card drains itself", () => {
  it("Xid 79 on card 2 of 4 mid-job: drained, deregistered, others mine on, says why once, undrain brings it back; Xid 13 drains nothing", {
    timeout: 300_000,
  }, async () => {
    const { coordinator, hook, events, eventsFile, port, base, start } = await drainRig(t, "drain");
    const host = start(4);
    await until("four registrations", () => (coordinator.miners().length === 4 ? true : null));
    await until("readyz 200", async () => ((await get(`${base}/readyz`)).status === 200 ? true : null));

    // A long job on card 2; the Xid lands once it has started there.
    const long = coordinator.enqueue({
      payload: { model: "tiny", prompt: "a long one", max_tokens: 480, temperature: 0 },
      constraints: L4,
    });
    const started = /"worker":"host-gpu2".*"event":"job_started"|"event":"job_started".*"worker":"host-gpu2"/;
    await until("the job running on card 2", () => (started.test(host.stderr()) ? true : null));
    const t0 = performance.now();
    appendFakeEvents(eventsFile, [{ index: 2, type: EVENT_XID, data: 79 }]);
    // Work for the other cards meanwhile (no constraint: any worker that polls may take it).
    const others = Array.from({ length: 6 }, (_, i) => coordinator.enqueue(inferenceJob(100 + i)));

    await until("card 2's worker deregistered", () =>
      events.some((e) => e.type === "deregistered" && e.minerId === "host-gpu2") ? true : null,
    );
    const drainMs = Math.round(performance.now() - t0);
    console.log(`Xid 79 → card 2's worker deregistered in ${drainMs} ms`);
    const failed = events.find((e) => e.type === "failed" && e.jobId === long);
    expect(failed).toMatchObject({ minerId: "host-gpu2", errorCode: "gpu_unavailable", requeued: true });
    expect(
      coordinator
        .miners()
        .map((m) => m.minerId)
        .sort(),
    ).toEqual(["host-gpu0", "host-gpu1", "host-gpu3"]);

    // The other three mine on and lose nothing.
    await until("the other cards' jobs completed", () =>
      others.every((id) => coordinator.job(id)?.state === "COMPLETED") ? true : null,
    );
    for (const id of others) expect(coordinator.job(id)!.minerId).not.toBe("host-gpu2");
    expect(coordinator.job(long)!.state).toBe("QUEUED"); // only card 2 matches it: it waits

    // Why, once: one log line, /readyz, /status, the status command, the gauge, one alert.
    const ready = await get(`${base}/readyz`);
    expect(ready.status).toBe(200); // the host's other cards still mine
    const why = (JSON.parse(ready.text) as { drained: Record<string, string> }).drained["host-gpu2"];
    expect(why).toMatch(/^GPU 2 drained: Xid 79/);
    const drainedLines = host
      .stderr()
      .split("\n")
      .filter((l) => l.includes('"event":"gpu_drained"'));
    expect(drainedLines).toHaveLength(1);
    const status = JSON.parse((await get(`${base}/status`)).text) as {
      workers: { minerId: string; verdict: string; polls: number; completed: number }[];
    };
    const w2 = status.workers.find((w) => w.minerId === "host-gpu2")!;
    expect(w2.verdict).toBe(why);
    expect(status.workers.filter((w) => w.minerId !== "host-gpu2").reduce((n, w) => n + w.completed, 0)).toBe(
      6,
    );
    const cli = await runCli(["status", "--metrics-port", String(port)]);
    expect(cli.code).toBe(0);
    expect(cli.stdout).toContain(`host-gpu2 (GPU 2): ${why}`);
    const metrics = (await get(`${base}/metrics`)).text;
    expect(metrics).toMatch(/aitbc_gpu_health\{gpu="2",UUID="[^"]+",state="lost"\} 1/);
    expect(metrics).toMatch(/aitbc_gpu_health\{gpu="1",UUID="[^"]+",state="healthy"\} 1/);
    await until("the drain alert", () => (hook.bodies.length > 0 ? true : null));
    const drainAlerts = () => hook.bodies.filter((b) => String(b["text"]).includes("drained"));
    expect(drainAlerts()).toHaveLength(1);
    expect(String(drainAlerts()[0]!["text"])).toContain("host-gpu2: GPU 2 drained: Xid 79");
    expect(JSON.stringify(hook.bodies)).not.toContain("test-key"); // no credential in any alert

    // The operator on this host undrains it.
    const undrain = await runCli(["gpu", "undrain", "2", "--metrics-port", String(port)]);
    expect(undrain.stderr).toBe("");
    expect(undrain.code).toBe(0);
    await until("card 2 registered again", () =>
      coordinator.miners().some((m) => m.minerId === "host-gpu2") ? true : null,
    );
    await until("the requeued job completed on card 2", () =>
      coordinator.job(long)?.state === "COMPLETED" ? true : null,
    );
    expect(coordinator.job(long)!.minerId).toBe("host-gpu2");
    await until("the back alert", () =>
      hook.bodies.some((b) => String(b["text"]).includes("takes jobs again")) ? true : null,
    );
    expect(drainAlerts()).toHaveLength(1);

    // An application's own Xid 13 on card 1: seen, nothing drained.
    appendFakeEvents(eventsFile, [{ index: 1, type: EVENT_XID, data: 13 }]);
    await until("the Xid 13 seen", () =>
      /"event":"gpu_health_event".*"xid":13/.test(host.stderr()) ? true : null,
    );
    const a100 = coordinator.enqueue(inferenceJob(200, {}));
    const onA100 = coordinator.enqueue({
      ...inferenceJob(201),
      constraints: { gpu: "NVIDIA A100-SXM4-40GB" },
    });
    await until("jobs after the Xid 13", () =>
      [a100, onA100].every((id) => coordinator.job(id)?.state === "COMPLETED") ? true : null,
    );
    expect(coordinator.job(onA100)!.minerId).toBe("host-gpu1");
    expect(
      host
        .stderr()
        .split("\n")
        .filter((l) => l.includes('"event":"gpu_drained"')),
    ).toHaveLength(1);
    expect(coordinator.miners()).toHaveLength(4);

    // The operator's drain of a healthy card, then an ID the host does not have.
    const drain3 = await runCli(["gpu", "drain", "host-gpu3", "--metrics-port", String(port)]);
    expect(drain3.stdout).toBe("host-gpu3 is drained: GPU 3 drained by the operator\n");
    await until("card 3's worker deregistered", () =>
      events.some((e) => e.type === "deregistered" && e.minerId === "host-gpu3") ? true : null,
    );
    expect((await get(`${base}/metrics`)).text).toMatch(
      /aitbc_gpu_health\{gpu="3",UUID="[^"]+",state="drained"\} 1/,
    );
    const bad = await runCli(["gpu", "drain", "9", "--metrics-port", String(port)]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe('gpu drain: no worker or GPU "9" on this host\n');
    expect((await runCli(["gpu", "undrain", "3", "--metrics-port", String(port)])).code).toBe(0);
    await until("card 3 registered again", () =>
      coordinator.miners().some((m) => m.minerId === "host-gpu3") ? true : null,
    );

    host.child.kill("SIGTERM");
    expect((await host.exit).code).toBe(0);
  });
});
