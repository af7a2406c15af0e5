// One owner per state directory: a second `run` on a held directory exits 75 naming the holder's
// PID, also while the holder is stopped (SIGSTOP); after the holder dies by SIGKILL nothing stale
// remains and a restart mines at once. A fleet's workers each hold their own directory.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { lockFileOf, lockStateDir } from "../../src/state-lock.js";
import { type Spawned, spawnCli } from "../support/cli.js";
import "../support/gpu.js"; // the freshly built addon, for the in-process lock below
import { API_KEY, coordinatorWithReceipts, inferenceJob, modelsDir } from "../support/harness.js";

let coordinator: LocalCoordinator | null = null;
const miners: Spawned[] = [];
afterEach(async () => {
  for (const m of miners) {
    m.child.kill("SIGCONT");
    m.child.kill("SIGKILL");
  }
  miners.length = 0;
  await coordinator?.close();
  coordinator = null;
});

function start(url: string, stateDir: string, minerId: string): Spawned {
  const m = spawnCli([
    "run",
    ...["--coordinator", url, "--api-key", API_KEY, "--miner-id", minerId, "--models", modelsDir],
    ...["--threads", "1", "--gpu", "cpu", "--state-dir", stateDir, "--polls-per-minute", "60000"],
    ...["--long-poll", "0", "--log-level", "info"],
  ]);
  miners.push(m);
  return m;
}

const lockedLine = (m: Spawned) =>
  m
    .stderr()
    .split("\n")
    .find((l) => l.includes('"event":"state_dir_locked"'));

describe("state directory lock", () => {
  it("a second run exits 75 naming the holder, also while it is stopped; a SIGKILL leaves no stale lock", async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    const stateDir = mkdtempSync(join(tmpdir(), "lock-state-"));
    const first = start(coordinator.url, stateDir, "first");
    await coordinator.waitFor((c) => c.miners().some((m) => m.minerId === "first"), 60_000);

    const second = start(coordinator.url, stateDir, "second");
    expect((await second.exit).code).toBe(75);
    expect(lockedLine(second)).toContain(`PID ${first.child.pid}`);
    expect(lockedLine(second)).toContain("--state-dir");

    first.child.kill("SIGSTOP");
    const third = start(coordinator.url, stateDir, "third");
    expect((await third.exit).code).toBe(75);
    expect(lockedLine(third)).toContain(`PID ${first.child.pid}`);

    first.child.kill("SIGKILL");
    await first.exit;
    const id = coordinator.enqueue(inferenceJob(1));
    start(coordinator.url, stateDir, "after-kill");
    await coordinator.waitFor((c) => c.job(id)?.state === "COMPLETED", 60_000);
    expect(coordinator.job(id)!.minerId).toBe("after-kill");
    expect(coordinator.miners().map((m) => m.minerId)).not.toContain("second");
  }, 180_000);

  it("in-process: the holder can release and take it again; a held lock reports this PID", () => {
    const dir = mkdtempSync(join(tmpdir(), "lock-unit-"));
    const a = lockStateDir(dir);
    expect(a?.ok).toBe(true);
    expect(a?.path).toBe(lockFileOf(dir));
    // POSIX record locks belong to the process: a second take in the same process succeeds, which
    // is why the miner takes it once, at start. Another process is refused (the test above).
    if (a?.ok) a.release();
    const b = lockStateDir(dir);
    expect(b?.ok).toBe(true);
    if (b?.ok) b.release();
  });
});
