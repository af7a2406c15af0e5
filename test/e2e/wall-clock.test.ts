// The wall clock steps (NTP on a VM at boot, an operator's `date -s`), the monotonic clock does not:
// the miner CLI runs under Debian's libfaketime, whose offset the test rewrites mid-run (back three
// hours, then five hours ahead), with CLOCK_MONOTONIC left alone (FAKETIME_DONT_FAKE_MONOTONIC=1,
// checked first by experiment). Polling, heartbeats and jobs go on and /healthz stays 200.
// Skipped where libfaketime is not installed (.ci/run installs it: apt-get install faketime).
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { type Spawned, spawnCli } from "../support/cli.js";
import { API_KEY, coordinatorWithReceipts, inferenceJob, modelsDir } from "../support/harness.js";
import { named, opsUrl, sampleProbes, until } from "../support/probes.js";

const LIBFAKETIME = [
  "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
  "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
  "/usr/lib/faketime/libfaketime.so.1",
].find((p) => existsSync(p));

const HOUR = 3_600_000;
const POLL = "POST /v1/miners/poll";
const BEAT = "POST /v1/miners/heartbeat";

let coordinator: LocalCoordinator | null = null;
const children: Spawned[] = [];
afterEach(async () => {
  for (const c of children) c.child.kill("SIGKILL");
  children.length = 0;
  await coordinator?.close();
  coordinator = null;
});

/** libfaketime reading its offset from a file the test rewrites ("+0", "-3h", "+5h": from real time). */
function fakedWallClock() {
  const file = join(mkdtempSync(join(tmpdir(), "faketime-")), "offset");
  writeFileSync(file, "+0\n");
  return {
    env: {
      LD_PRELOAD: LIBFAKETIME!,
      FAKETIME_TIMESTAMP_FILE: file,
      FAKETIME_CACHE_DURATION: "1", // the file is read again every second
      FAKETIME_DONT_FAKE_MONOTONIC: "1",
    },
    step(offsetMs: number) {
      writeFileSync(file, `${offsetMs < 0 ? "-" : "+"}${Math.abs(offsetMs) / 1000}\n`);
    },
  };
}

/** Whether a wall time read in the faked process (ms, or a log line's ISO time) is the real one shifted by `offsetMs` (± 10 min). */
function shifted(t: unknown, offsetMs: number): boolean {
  const ms = typeof t === "string" ? Date.parse(t) : t;
  return typeof ms === "number" && Math.abs(ms - (Date.now() + offsetMs)) < 10 * 60_000;
}

describe.skipIf(!LIBFAKETIME)("a wall clock that steps", () => {
  it("libfaketime in this mode steps Date.now() and leaves performance.now() alone", async () => {
    const clock = fakedWallClock();
    const script =
      "setInterval(() => console.log(JSON.stringify({ wall: Date.now(), mono: performance.now() })), 100)";
    const child = spawn(process.execPath, ["-e", script], {
      env: { ...process.env, ...clock.env },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const lines: { wall: number; mono: number }[] = [];
    child.stdout.on("data", (d: Buffer) => {
      for (const l of d.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(l));
    });
    const exited = new Promise((r) => child.on("exit", r));
    try {
      await expect.poll(() => lines.length, { timeout: 60_000 }).toBeGreaterThan(0);
      clock.step(-3 * HOUR);
      await expect.poll(() => lines.some((l) => shifted(l.wall, -3 * HOUR)), { timeout: 60_000 }).toBe(true);
    } finally {
      child.kill();
      await exited;
    }
    for (let i = 1; i < lines.length; i++) {
      const d = lines[i]!.mono - lines[i - 1]!.mono;
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(60_000); // the monotonic clock did not jump with the wall
    }
  });

  it("back three hours, then five ahead: polls, heartbeats and jobs go on, /healthz stays 200", {
    timeout: 300_000,
  }, async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    const c = coordinator;
    const clock = fakedWallClock();
    const m = spawnCli(
      [
        "run",
        ...["--coordinator", c.url, "--api-key", API_KEY, "--miner-id", "clock-miner", "--models", modelsDir],
        ...["--threads", "1", "--gpu", "cpu", "--state-dir", mkdtempSync(join(tmpdir(), "clock-state-"))],
        // The coordinator's budget shape (a sliding window), 100 ms apart when idle; 1 s heartbeats.
        ...["--polls-per-minute", "600", "--long-poll", "0", "--heartbeat-interval", "1"],
        ...["--metrics-port", "0", "--log-level", "info"],
      ],
      clock.env,
    );
    children.push(m);
    const base = await opsUrl(m);
    const sampler = sampleProbes(base, m, 250);
    const count = (route: string) => c.stats().byRoute[route] ?? 0;
    let n = 0;
    const runJob = async () => {
      const id = c.enqueue(inferenceJob(++n));
      await c.waitFor((x) => x.job(id)?.state === "COMPLETED", 120_000);
    };
    await runJob();

    for (const offset of [-3 * HOUR, 5 * HOUR]) {
      clock.step(offset);
      // Jobs until one is logged at the stepped wall time: the step has reached the miner.
      await until(
        `a log line at the wall time ${offset / HOUR} h from now`,
        async () => {
          await runJob();
          return shifted(named(m, "job_completed").at(-1)?.time, offset);
        },
        m,
      );
      const polls = count(POLL);
      const beats = count(BEAT);
      await c.waitFor(() => count(POLL) >= polls + 20 && count(BEAT) >= beats + 3, 120_000);
      await runJob();
    }
    const samples = await sampler.stop();
    const live = samples.filter((s) => s.path === "/healthz");
    expect(live.length).toBeGreaterThan(10);
    expect(live.filter((s) => s.status !== 200)).toEqual([]);
    // Ready from the first poll on, through both steps.
    const ready = samples.filter((s) => s.path === "/readyz");
    const first = ready.findIndex((s) => s.status === 200);
    expect(first).toBeGreaterThanOrEqual(0);
    expect(ready.slice(first).filter((s) => s.status !== 200)).toEqual([]);
    m.child.kill("SIGTERM");
    expect((await m.exit).code).toBe(0);
  });
});
