// A one-process host without a GPU (--gpus none) sends webhook alerts too (it used to log
// alert_webhook_unused): the coordinator refusing its credentials, a state directory that cannot
// be written or fills up while it runs, and no job for --alert-no-job-minutes while its polls are answered. The real CLI,
// the local coordinator.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type Spawned, spawnCli } from "../support/cli.js";
import { until } from "../support/fleet.js";
import { API_KEY, coordinatorWithReceipts, modelsDir } from "../support/harness.js";
import { hostTestParts, startWebhook } from "../support/webhook.js";

const t = hostTestParts();

/** Whether this process may mount a tmpfs (root on Linux). */
function canMount(): boolean {
  if (process.platform !== "linux") return false;
  const d = mkdtempSync(join(tmpdir(), "mount-probe-"));
  const ok = spawnSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", d]).status === 0;
  if (ok) spawnSync("umount", [d]);
  rmSync(d, { recursive: true, force: true });
  return ok;
}

function run(url: string, apiKey: string, extra: string[] = [], stateDir?: string): Spawned {
  return spawnCli([
    "run",
    ...["--coordinator", url, "--api-key", apiKey, "--miner-id", "solo", "--gpus", "none"],
    ...["--models", modelsDir, "--threads", "1", "--gpu", "cpu"],
    ...["--state-dir", stateDir ?? mkdtempSync(join(tmpdir(), "one-alerts-"))],
    ...["--polls-per-minute", "600", "--long-poll", "0", "--heartbeat-interval", "1"],
    ...["--alert-webhook", t.hook!.url, ...extra],
  ]);
}

describe("alerts from a one-process host", () => {
  it("credentials refused: one alert, no credential in it, and the run exits 2", {
    timeout: 180_000,
  }, async () => {
    t.coordinator = (await coordinatorWithReceipts()).coordinator;
    t.hook = await startWebhook();
    t.miner = run(t.coordinator.url, "wrong-key-SECRET123");
    expect((await t.miner.exit).code).toBe(2);
    expect(t.miner.stderr()).not.toContain("alert_webhook_unused");
    const credentials = t.hook.bodies.filter((b) => b["alert"] === "credentials");
    expect(credentials).toHaveLength(1);
    expect(String(credentials[0]!["text"])).toMatch(
      /solo: the coordinator refuses our credentials; mining stopped$/,
    );
    expect(JSON.stringify(t.hook.bodies)).not.toContain("SECRET123");
  });

  it("a state directory that cannot be written: one alert, and the run exits 73", {
    timeout: 120_000,
  }, async () => {
    t.coordinator = (await coordinatorWithReceipts()).coordinator;
    t.hook = await startWebhook();
    // A file where the directory should be: nothing can ever be written there (even as root).
    const notADir = join(mkdtempSync(join(tmpdir(), "one-alerts-")), "file");
    writeFileSync(notADir, "");
    t.miner = run(t.coordinator.url, API_KEY, [], join(notADir, "state"));
    expect((await t.miner.exit).code).toBe(73);
    const state = t.hook.bodies.filter((b) => b["alert"] === "state");
    expect(state).toHaveLength(1);
    expect(String(state[0]!["text"])).toMatch(/solo: the state directory cannot be written; mining stopped$/);
  });

  // A 16 MiB tmpfs is below the free space the miner keeps (64 MiB): full from the start.
  it.runIf(canMount())(
    "a full state directory while it runs: one alert, mining paused",
    { timeout: 120_000 },
    async () => {
      t.coordinator = (await coordinatorWithReceipts()).coordinator;
      t.hook = await startWebhook();
      const small = mkdtempSync(join(tmpdir(), "one-alerts-tmpfs-"));
      expect(spawnSync("mount", ["-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", small]).status).toBe(0);
      try {
        t.miner = run(t.coordinator.url, API_KEY, [], small);
        await until("the state alert", () =>
          t.hook!.bodies.some((b) => b["alert"] === "state") ? true : null,
        );
        const state = t.hook.bodies.filter((b) => b["alert"] === "state");
        expect(String(state[0]!["text"])).toMatch(
          /solo: the state directory is full or read-only; mining is paused$/,
        );
        t.miner.child.kill("SIGTERM");
        await t.miner.exit;
        expect(t.hook.bodies.filter((b) => b["alert"] === "state")).toHaveLength(1);
      } finally {
        spawnSync("umount", [small]);
      }
    },
  );

  it("no job for --alert-no-job-minutes 0.1 while polls are answered: one alert", {
    timeout: 240_000,
  }, async () => {
    t.coordinator = (await coordinatorWithReceipts()).coordinator;
    t.hook = await startWebhook();
    t.miner = run(t.coordinator.url, API_KEY, ["--alert-no-job-minutes", "0.1"]);
    // The watch looks 4 times a period once the period (6 s) has passed since the start.
    await until(
      "the no-job alert",
      () => (t.hook!.bodies.some((b) => b["alert"] === "nojob") ? true : null),
      200_000,
    );
    const nojob = t.hook.bodies.filter((b) => b["alert"] === "nojob");
    expect(nojob).toHaveLength(1);
    expect(String(nojob[0]!["text"])).toMatch(/solo: no job for 6 s although \d+ polls were answered/);
    t.miner.child.kill("SIGTERM");
    expect((await t.miner.exit).code).toBe(0);
  });
});
