// Storage trouble is the miner's problem, never the job's: with the state directory full, jobs in
// hand still complete (delivered from memory), no new job is taken, a restart does not crash, and
// mining resumes by itself when space is back. Run on a real 2 MiB tmpfs where this process may
// mount one (root on Linux), and always with ENOSPC/EROFS injected at the file layer.
import { execFileSync, spawnSync } from "node:child_process";
import nodeFs, { promises as fsp, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { ExitCode } from "../../src/miner/exit-codes.js";
import { runCli } from "../support/cli.js";
import {
  API_KEY,
  capturingLogger,
  coordinatorWithReceipts,
  fastOverrides,
  inferenceJob,
  minerConfig,
  modelsDir,
  startMiner,
} from "../support/harness.js";
import { fileHandleMethods } from "../support/state-files.js";

let coordinator: LocalCoordinator | null = null;
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const c of cleanups.splice(0).reverse()) await c();
  await coordinator?.close();
  coordinator = null;
});

function tryMount(dir: string, opts: string): boolean {
  if (process.platform !== "linux") return false;
  return spawnSync("mount", ["-t", "tmpfs", "-o", opts, "tmpfs", dir], { stdio: "ignore" }).status === 0;
}
const canMount = (() => {
  const d = mkdtempSync(join(tmpdir(), "mount-probe-"));
  const ok = tryMount(d, "size=64k");
  if (ok) execFileSync("umount", [d]);
  rmSync(d, { recursive: true, force: true });
  return ok;
})();

/** A way to make the state directory full and free again. */
interface Disk {
  stateDir: string;
  /** Every write fails at once (injected), so exactly the job in hand completes while full. */
  exact?: boolean;
  fill(): void;
  free(): void;
}

function tmpfsDisk(): Disk {
  const stateDir = mkdtempSync(join(tmpdir(), "state-tmpfs-"));
  if (!tryMount(stateDir, "size=2m,mode=0700")) throw new Error("mount failed");
  cleanups.push(() => {
    spawnSync("umount", [stateDir]);
    rmSync(stateDir, { recursive: true, force: true });
  });
  const filler = join(stateDir, "filler");
  return {
    stateDir,
    fill() {
      try {
        writeFileSync(filler, Buffer.alloc(4 * 1024 * 1024)); // larger than the disk: fills it
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
      }
    },
    free: () => rmSync(filler, { force: true }),
  };
}

/** The methods every FileHandle shares (appends to an open log go through them). */
const fileHandleProto = await fileHandleMethods();

/**
 * ENOSPC from every write-side call under the state directory while "full" (and from every
 * FileHandle write: the test process writes no other file meanwhile).
 */
function injectedDisk(code = "ENOSPC"): Disk {
  const stateDir = mkdtempSync(join(tmpdir(), "state-inject-"));
  cleanups.push(() => rmSync(stateDir, { recursive: true, force: true }));
  let full = false;
  const fail = (path: unknown) => {
    if (!full || !String(path).startsWith(stateDir)) return null;
    return Object.assign(new Error(`${code}: injected, write '${String(path)}'`), { code });
  };
  // Appends to a log opened before the disk filled fail too (they are written with writeSync
  // on its descriptor: any but stdio's fails while full).
  const writeSync = nodeFs.writeSync;
  vi.spyOn(nodeFs, "writeSync").mockImplementation(((fd: number, ...rest: unknown[]) => {
    const err = fd > 2 ? fail(stateDir) : null;
    if (err) throw err;
    return (writeSync as (...a: unknown[]) => number)(fd, ...rest);
  }) as never);
  for (const name of ["write", "writev", "datasync", "sync", "truncate"] as const) {
    const original = fileHandleProto[name] as (...a: unknown[]) => Promise<unknown>;
    vi.spyOn(fileHandleProto, name).mockImplementation(function (this: unknown, ...args: unknown[]) {
      const err = fail(stateDir);
      return err ? Promise.reject(err) : original.apply(this, args);
    } as never);
  }
  for (const name of ["open", "writeFile", "appendFile", "rename", "mkdir"] as const) {
    const original = fsp[name] as (...a: unknown[]) => Promise<unknown>;
    vi.spyOn(fsp, name).mockImplementation(((path: unknown, ...rest: unknown[]) => {
      // Reading stays possible on a full disk; only writes fail.
      const flags = name === "open" ? String(rest[0] ?? "r") : "w";
      const err = flags === "r" ? null : fail(path);
      return err ? Promise.reject(err) : original(path, ...rest);
    }) as never);
  }
  return { stateDir, exact: true, fill: () => (full = true), free: () => (full = false) };
}

const states = (c: LocalCoordinator, ids: string[]) => ids.map((id) => c.job(id)!.state);

async function fullDiskScenario(disk: Disk): Promise<void> {
  coordinator = (await coordinatorWithReceipts()).coordinator;
  const cfg = minerConfig(coordinator.url, { stateDir: disk.stateDir });
  const overrides = { ...fastOverrides, stateMinFreeBytes: 0 };
  const { log, lines } = capturingLogger("info");
  let miner = await startMiner(cfg, log, overrides);
  await coordinator.waitFor((c) => c.miners().length === 1, 60_000);

  disk.fill();
  const ids = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => coordinator!.enqueue(inferenceJob(i)));
  // Jobs run while their records still fit (on a real disk, in space the log already had); the
  // job in hand when a write fails still completes, from memory; then none is taken.
  await coordinator.waitFor(() => lines.some((l) => l.includes('"state_unwritable"')), 60_000);
  await coordinator.waitFor(
    (c) => ids.every((id) => ["COMPLETED", "QUEUED"].includes(c.job(id)!.state)),
    60_000,
  );
  const whileFull = states(coordinator, ids);
  const completed = whileFull.filter((s) => s === "COMPLETED").length;
  expect(completed).toBeGreaterThanOrEqual(1);
  if (disk.exact) expect(completed).toBe(1);
  expect(completed).toBeLessThanOrEqual(4);
  await new Promise((r) => setTimeout(r, 1500));
  expect(states(coordinator, ids)).toEqual(whileFull);
  expect(miner.miner.snapshot().stateWritable).toBe(false);
  expect(lines.filter((l) => l.includes('"state_unwritable"'))).toHaveLength(1);
  expect(lines.some((l) => l.includes('"invalid_payload"'))).toBe(false);

  // A restart while full neither crashes nor takes jobs.
  expect((await miner.stop()).code).toBe(0);
  miner = await startMiner(cfg, log, overrides);
  const exitedEarly = await Promise.race([
    miner.done.then(() => true),
    new Promise((r) => setTimeout(() => r(false), 2000)),
  ]);
  expect(exitedEarly).toBe(false);
  expect(states(coordinator, ids)).toEqual(whileFull);

  // Space is back: mining resumes by itself.
  disk.free();
  await coordinator.waitFor((c) => ids.every((id) => c.job(id)!.state === "COMPLETED"), 60_000);
  expect(lines.some((l) => l.includes('"state_writable"'))).toBe(true);
  expect((await miner.stop()).code).toBe(0);
}

describe("full state directory", () => {
  it("injected ENOSPC: jobs in hand complete, none is taken while full, mining resumes", async () => {
    await fullDiskScenario(injectedDisk());
  });

  it.runIf(canMount)("a real full tmpfs: the same", async () => {
    await fullDiskScenario(tmpfsDisk());
  });
});

describe("unwritable state directory at start", () => {
  it.runIf(canMount)("a read-only filesystem stops run with exit 73 and advice, no stack trace", async () => {
    const dir = mkdtempSync(join(tmpdir(), "state-ro-"));
    expect(tryMount(dir, "ro,size=64k")).toBe(true);
    cleanups.push(() => {
      spawnSync("umount", [dir]);
      rmSync(dir, { recursive: true, force: true });
    });
    const r = await runCli(
      [
        "run",
        "--coordinator",
        "http://127.0.0.1:9",
        "--state-dir",
        join(dir, "state"),
        "--models",
        modelsDir,
      ],
      { AITBC_API_KEY: API_KEY },
    );
    expect(r.code).toBe(ExitCode.stateUnwritable);
    expect(r.stdout + r.stderr).toContain("--state-dir");
    expect(r.stdout + r.stderr).not.toMatch(/\n\s+at /);
  });

  it("injected EROFS on an existing state directory: the miner stops with exit 73", async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    const disk = injectedDisk("EROFS");
    mkdirSync(disk.stateDir, { recursive: true });
    const cfg = minerConfig(coordinator.url, { stateDir: disk.stateDir });
    // The key exists (made while writable); then the filesystem turns read-only.
    const first = await startMiner(cfg);
    expect((await first.stop()).code).toBe(0);
    disk.fill();
    const miner = await startMiner(cfg);
    const exit = await miner.done;
    await miner.close();
    expect(exit.code).toBe(ExitCode.stateUnwritable);
    expect(exit.reason).toContain("--state-dir");
  });
});

describe("doctor checks the state directory as the miner needs it", () => {
  it.runIf(canMount)("a real write and the headroom: full and read-only both fail with advice", async () => {
    const dir = mkdtempSync(join(tmpdir(), "state-doctor-"));
    expect(tryMount(dir, "size=1m")).toBe(true);
    cleanups.push(() => {
      spawnSync("umount", [dir]);
      rmSync(dir, { recursive: true, force: true });
    });
    const full = await runCli(["doctor", "--state-dir", dir]);
    expect(full.stdout).toMatch(/state .*below the 64 MiB headroom/);
    expect(full.stdout).toContain("free disk space");
    expect(spawnSync("mount", ["-o", "remount,ro", dir]).status).toBe(0);
    const ro = await runCli(["doctor", "--state-dir", dir]);
    expect(ro.stdout).toMatch(/state .*read-only \(EROFS\)/);
    const ok = await runCli(["doctor", "--state-dir", mkdtempSync(join(tmpdir(), "state-ok-"))]);
    expect(ok.stdout).toMatch(/state .*writable, \d+ MiB free/);
  });
});
