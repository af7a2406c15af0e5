// The event watcher in real processes: stopping joins its thread (the OS thread count goes back),
// and a process ends by itself, exit code 0, whether it stops the watcher, returns while watching,
// or calls process.exit while watching. Also `telemetry` showing each GPU's health verdict.
import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { appendFakeEvents, EVENT_XID, fakeDevice } from "../fake-nvml/config.js";
import { addonPath, configFile, fake, root, runNode, telemetryCli } from "../support/gpu.js";
import { eventually, fakeWithEventsFiles } from "../support/health.js";

interface Child {
  lines: () => unknown[];
  exited: () => { code: number | null; signal: string | null } | null;
  stderr: () => string;
}

function start(mode: string, cfg: string): Child {
  const child = spawn(process.execPath, ["test/gpu/fixtures/health-events.mjs", fake.current, mode], {
    cwd: root,
    env: { ...process.env, FAKE_NVML_CONFIG: cfg, AITBC_NVML_ADDON: addonPath },
  });
  let out = "";
  let err = "";
  let exit: { code: number | null; signal: string | null } | null = null;
  child.stdout.on("data", (b: Buffer) => {
    out += b.toString();
  });
  child.stderr.on("data", (b: Buffer) => {
    err += b.toString();
  });
  child.on("exit", (code, signal) => {
    exit = { code, signal };
  });
  return {
    lines: () =>
      out
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as unknown),
    exited: () => exit,
    stderr: () => err,
  };
}

describe("the event watcher in a process", () => {
  it("stopEvents joins the thread: the thread count goes back, and the process exits 0", async () => {
    const { eventsFile: file, config } = fakeWithEventsFiles(4);
    const c = start("stop", config);
    await eventually("ready", () => c.lines().length > 0 || c.exited());
    expect(c.lines()[0]).toEqual({ ready: true, running: true });
    appendFakeEvents(file, [{ index: 2, type: EVENT_XID, data: 79 }]);
    const exit = await eventually("the process to exit", () => c.exited());
    expect(exit, c.stderr()).toEqual({ code: 0, signal: null });
    const report = c.lines()[1] as {
      event: Record<string, unknown>;
      stopped: boolean;
      running: boolean;
      threads: { before: number; watching: number; after: number };
    };
    expect(report.event).toMatchObject({ kind: "event", index: 2, uuid: fakeDevice(2).uuid, xid: 79 });
    expect(report.stopped).toBe(true);
    expect(report.running).toBe(false);
    expect(report.threads.watching).toBe(report.threads.before + 1);
    expect(report.threads.after).toBe(report.threads.before);
  });

  it.each(["return", "exit"])(
    "a process that leaves while watching (%s) ends by itself with code 0",
    async (mode) => {
      const c = start(mode, fakeWithEventsFiles(2).config);
      const exit = await eventually("the process to exit", () => c.exited());
      expect(exit, c.stderr()).toEqual({ code: 0, signal: null });
      expect(c.lines()[0]).toEqual({ ready: true, running: true });
    },
  );
});

describe("telemetry shows each GPU's health", () => {
  const cfg = () =>
    configFile({
      devices: [
        fakeDevice(0),
        fakeDevice(1, { retiredPagesPending: true }),
        fakeDevice(2, { lostAfter: 0 }),
        fakeDevice(3, { remappedRows: { correctable: 0, uncorrectable: 1, pending: false, failure: true } }),
      ],
    });
  const run = (args: string[]) =>
    runNode([telemetryCli, "telemetry", "--nvml-library", fake.current, ...args], {
      FAKE_NVML_CONFIG: cfg(),
      AITBC_NVML_ADDON: addonPath,
    });

  it("--json: a health verdict per GPU; --drained takes a healthy GPU out of service", async () => {
    const r = await run(["--json", "--drained", `${fakeDevice(0).uuid}`]);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as {
      schema: string;
      gpus: { uuid: string; health: Record<string, unknown> }[];
    };
    expect(doc.schema).toBe("aitbc-telemetry/2");
    const health = doc.gpus.map((g) => g.health);
    expect(health.map((h) => [h["state"], h["drained"], h["takesJobs"]])).toEqual([
      ["healthy", true, false],
      ["sick", false, false],
      ["lost", false, false],
      ["sick", false, false],
    ]);
    const codes = health.map((h) => (h["reasons"] as { code: string }[]).map((x) => x.code));
    expect(codes).toEqual([["drained"], ["retired_pages_pending"], ["gpu_lost"], ["row_remap_failure"]]);
  });

  it("--watch also listens to NVML's events: an Xid 79 on GPU 2 shows in the next frame; SIGINT exits 0", async () => {
    const { eventsFile, config } = fakeWithEventsFiles(4);
    const child = spawn(
      process.execPath,
      [telemetryCli, "telemetry", "--watch", "0.1", "--json", "--nvml-library", fake.current],
      { cwd: root, env: { ...process.env, FAKE_NVML_CONFIG: config, AITBC_NVML_ADDON: addonPath } },
    );
    let out = "";
    child.stdout.on("data", (b: Buffer) => {
      out += b.toString();
    });
    const code = new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
    type Frame = { gpus: { health: { state: string; reasons: { code: string }[] } }[] };
    const frames = (): Frame[] =>
      out
        .split("\x1b[H\x1b[2J")
        .map((f) => f.trim())
        .filter((f) => f.endsWith("}"))
        .map((f) => JSON.parse(f) as Frame);
    await eventually("a first frame", () => frames().length > 0);
    expect(frames()[0]!.gpus.map((g) => g.health.state)).toEqual([
      "healthy",
      "healthy",
      "healthy",
      "healthy",
    ]);
    appendFakeEvents(eventsFile, [{ index: 2, type: EVENT_XID, data: 79 }]);
    const lost = await eventually("a frame with GPU 2 lost", () =>
      frames().find((f) => f.gpus[2]!.health.state === "lost"),
    );
    expect(lost.gpus.map((g) => g.health.state)).toEqual(["healthy", "healthy", "lost", "healthy"]);
    expect(lost.gpus[2]!.health.reasons.map((r) => r.code)).toEqual(["xid_79"]);
    child.kill("SIGINT");
    expect(await code).toBe(0);
  });

  it("the table says why under each GPU that is not plainly healthy; a bad --drained exits 2", async () => {
    const r = await run([]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("health: sick: a retired memory page waits for a GPU reset");
    expect(r.stdout).toMatch(/health: lost: NVML cannot read this GPU: .*GPU is lost \(NVML code 15\)/);
    expect(r.stdout.match(/health:/g)).toHaveLength(3);
    const bad = await run(["--drained", "a,,b"]);
    expect(bad.code).toBe(2);
  });
});
