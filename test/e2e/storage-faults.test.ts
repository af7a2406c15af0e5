// Storage faults are per file (issue 18): one state file that cannot be written (the directory
// itself fine) is treated as the full disk is: the job in hand finishes from memory, no new job is
// taken, one state_unwritable line for the episode (no flapping), mining resumes when it heals.
// And never twice: a result the coordinator accepted whose removal from the outbox or journal
// could not be written is neither run nor submitted again after a SIGKILL and a restart.
// The tests run as root, so a file is made unwritable with the immutable attribute (root cannot
// write through it either), or with EACCES injected at the file layer.
import { existsSync, promises as fsp, mkdtempSync } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { type Spawned, spawnCli } from "../support/cli.js";
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
import { type FaultProxy, startFaultProxy } from "../support/proxy.js";
import { canSetImmutable, fileHandleMethods, setImmutable, storedKeys } from "../support/state-files.js";

let coordinator: LocalCoordinator | null = null;
let proxy: FaultProxy | null = null;
const miners: Spawned[] = [];
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const m of miners.splice(0)) m.child.kill("SIGKILL");
  for (const c of cleanups.splice(0).reverse()) await c();
  await proxy?.close();
  await coordinator?.close();
  proxy = null;
  coordinator = null;
});

async function until(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** How a file is made unwritable and writable again. */
interface Fault {
  break(path: string): void;
  heal(path: string): void;
}

const immutable: Fault = {
  break(path) {
    setImmutable(path, true);
    cleanups.push(() => setImmutable(path, false));
  },
  heal: (path) => setImmutable(path, false),
};

const fileHandleProto = await fileHandleMethods();

/**
 * Probes of the state are counted (each writes `probeFile`) and, while `refuse` is set, opening
 * `path` for writing fails with EACCES, as do writes on handles opened on it. Other files are left
 * alone.
 */
function watchOpens(
  path: string,
  probeFile: string,
): { probes: () => number; refuse: (on: boolean) => void } {
  let probes = 0;
  let refusing = false;
  const handles = new WeakSet<object>();
  const eacces = () => Object.assign(new Error(`EACCES: injected, open '${path}'`), { code: "EACCES" });
  const open = fsp.open;
  vi.spyOn(fsp, "open").mockImplementation((async (p: unknown, flags?: unknown, mode?: unknown) => {
    const mine = String(p) === path;
    if (String(p) === probeFile) probes++;
    if (mine && refusing && flags !== undefined && flags !== "r") throw Object.assign(eacces(), { path });
    const fh = await (open as (...a: unknown[]) => Promise<FileHandle>)(p, flags, mode);
    if (mine) handles.add(fh);
    return fh;
  }) as never);
  for (const name of ["write", "writev", "datasync", "truncate"] as const) {
    const original = fileHandleProto[name] as (...a: unknown[]) => Promise<unknown>;
    vi.spyOn(fileHandleProto, name).mockImplementation(function (this: object, ...args: unknown[]) {
      return refusing && handles.has(this) ? Promise.reject(eacces()) : original.apply(this, args);
    } as never);
  }
  return {
    probes: () => probes,
    refuse: (on) => {
      refusing = on;
    },
  };
}

const injected = (w: ReturnType<typeof watchOpens>): Fault => ({
  break: () => w.refuse(true),
  heal: () => w.refuse(false),
});

const FILES = {
  journal: (stateDir: string) => join(stateDir, "journal", "records.log"),
  outbox: (stateDir: string) => join(stateDir, "outbox", "records.log"),
  receipts: (stateDir: string) => join(stateDir, "receipts.jsonl"),
};

async function oneFileScenario(which: keyof typeof FILES, how: "immutable" | "injected"): Promise<void> {
  coordinator = (await coordinatorWithReceipts()).coordinator;
  const stateDir = mkdtempSync(join(tmpdir(), "state-file-fault-"));
  const target = FILES[which](stateDir);
  const watch = watchOpens(target, join(stateDir, "outbox", ".tmp", `probe-${process.pid}`));
  const fault = how === "immutable" ? immutable : injected(watch);
  const cfg = minerConfig(coordinator.url, { stateDir });
  const { log, lines } = capturingLogger("info");
  const count = (event: string) => lines.filter((l) => l.includes(`"event":"${event}"`)).length;
  const m = await startMiner(cfg, log, { ...fastOverrides, stateMinFreeBytes: 0 });
  let stopped = false;
  cleanups.push(() => (stopped ? undefined : m.stop()));
  // One job first, written down to its last line: every state file exists (the receipts log is
  // made by the first receipt), and nothing of it is left to write.
  const first = coordinator.enqueue(inferenceJob(0));
  await coordinator.waitFor((c) => c.job(first)?.state === "COMPLETED", 60_000);
  await until(
    () =>
      lines.some((l) => l.includes('"event":"submitted"') && l.includes(first)) &&
      storedKeys(join(stateDir, "outbox")).length === 0 &&
      storedKeys(join(stateDir, "journal")).length === 0 &&
      existsSync(target),
    "the first job written down",
  );

  fault.break(target);
  const ids = [1, 2, 3, 4].map((i) => coordinator!.enqueue(inferenceJob(i)));
  await until(() => count("state_unwritable") > 0, "state_unwritable");
  // The job in hand when the write failed completes (delivered from memory); then none is taken.
  await coordinator.waitFor(
    (c) => ids.every((id) => ["COMPLETED", "QUEUED"].includes(c.job(id)!.state)),
    60_000,
  );
  const whileBroken = ids.map((id) => coordinator!.job(id)!.state);
  expect(whileBroken.filter((s) => s === "COMPLETED")).toHaveLength(1);
  // Two probes of the state later it still waits: no flapping.
  const probed = watch.probes();
  await until(() => watch.probes() >= probed + 2, "two more probes of the file");
  expect(ids.map((id) => coordinator!.job(id)!.state)).toEqual(whileBroken);
  expect(count("state_unwritable")).toBe(1);
  expect(count("state_writable")).toBe(0);
  expect(m.miner.snapshot().stateWritable).toBe(false);
  expect(m.miner.health().reasons).toContain("the state directory cannot be written");
  const episode = JSON.parse(lines.find((l) => l.includes('"state_unwritable"'))!) as { file?: string };
  expect(episode.file).toBe(target);

  fault.heal(target);
  await coordinator.waitFor((c) => ids.every((id) => c.job(id)!.state === "COMPLETED"), 60_000);
  expect(count("state_unwritable")).toBe(1);
  expect(count("state_writable")).toBe(1);
  for (const id of [first, ...ids]) expect(coordinator.job(id)!.submissions).toBe(1);
  stopped = true;
  expect((await m.stop()).code).toBe(0);
}

describe("one state file that cannot be written, the directory fine", () => {
  describe.runIf(canSetImmutable)("made immutable (chattr +i)", () => {
    it.each(["journal", "outbox", "receipts"] as const)(
      "the %s log: the job in hand completes, one state_unwritable line, no job taken until it heals",
      async (which) => {
        await oneFileScenario(which, "immutable");
      },
    );
  });

  it("EACCES injected on the journal's log: the same", async () => {
    await oneFileScenario("journal", "injected");
  });
});

function events(m: Spawned): { event?: string; jobId?: string }[] {
  return m
    .stderr()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as { event?: string; jobId?: string });
}

const saw = (m: Spawned, event: string, jobId: string) =>
  events(m).some((e) => e.event === event && e.jobId === jobId);

describe.runIf(canSetImmutable)("never twice after a storage fault and a SIGKILL", () => {
  it.each([
    ["reference", false],
    ["upstream (accepts a result again and bills it)", true],
  ])(
    "%s: results accepted while their removals could not be written are neither run nor submitted again after a restart",
    async (_, upstreamQuirks) => {
      coordinator = (await coordinatorWithReceipts({ upstreamQuirks, leaseTimeoutMs: 0 })).coordinator;
      // Results wait in the outbox (503) until both logs are made immutable.
      proxy = await startFaultProxy(coordinator.url, [{ route: /\/result$/, times: 1e9, status: 503 }]);
      const stateDir = mkdtempSync(join(tmpdir(), "never-twice-"));
      const outboxLog = FILES.outbox(stateDir);
      const journalLog = FILES.journal(stateDir);
      const start = (extra: string[] = []) => {
        const m = spawnCli([
          "run",
          ...["--coordinator", proxy!.url, "--api-key", API_KEY, "--miner-id", "never-twice"],
          ...["--models", modelsDir, "--threads", "1", "--gpu", "cpu", "--state-dir", stateDir],
          ...["--polls-per-minute", "60000", "--long-poll", "0", "--request-timeout", "2"],
          ...["--log-level", "info", ...extra],
        ]);
        miners.push(m);
        return m;
      };
      const m1 = start(["--concurrency", "2"]);
      // a: computed and in the outbox, not delivered yet.
      const a = coordinator.enqueue({
        payload: { model: "tiny", prompt: "short", max_tokens: 4, temperature: 0 },
      });
      await until(
        () => saw(m1, "job_completed", a) && storedKeys(join(stateDir, "outbox")).includes(a),
        "a in the outbox",
      );
      // b: claimed and journaled, still running.
      const b = coordinator.enqueue({
        payload: { model: "tiny", prompt: "a long one", max_tokens: 480, temperature: 0 },
      });
      await until(
        () => saw(m1, "job_started", b) && storedKeys(join(stateDir, "journal")).includes(b),
        "b journaled",
      );
      immutable.break(outboxLog);
      immutable.break(journalLog);
      proxy.clear();
      // Both accepted (b delivered from memory); neither removal can be written.
      await coordinator.waitFor(
        (c) => c.job(a)?.state === "COMPLETED" && c.job(b)?.state === "COMPLETED",
        60_000,
      );
      await until(() => saw(m1, "submitted", a) && saw(m1, "submitted", b), "both acknowledged");
      m1.child.kill("SIGKILL");
      await m1.exit;
      immutable.heal(outboxLog);
      immutable.heal(journalLog);
      const left = [...storedKeys(join(stateDir, "outbox")), ...storedKeys(join(stateDir, "journal"))];
      expect(left).toContain(a);
      expect(left).toContain(b);

      const m2 = start();
      await until(
        () => saw(m2, "job_already_settled", a) && saw(m2, "job_already_settled", b),
        "a and b settled",
        60_000,
      );
      await until(
        () =>
          [...storedKeys(join(stateDir, "outbox")), ...storedKeys(join(stateDir, "journal"))].length === 0,
        "their records dropped",
      );
      // Mining goes on.
      const c = coordinator.enqueue({
        payload: { model: "tiny", prompt: "after", max_tokens: 4, temperature: 0 },
      });
      await coordinator.waitFor((co) => co.job(c)?.state === "COMPLETED", 60_000);
      m2.child.kill("SIGTERM");
      expect((await m2.exit).code).toBe(0);

      for (const id of [a, b, c])
        expect(coordinator.job(id)).toMatchObject({
          state: "COMPLETED",
          submissions: 1,
          duplicateSubmissions: 0,
        });
      for (const e of ["job_started", "job_resumed"]) expect(saw(m2, e, b)).toBe(false);
      expect(events(m2).some((e) => e.event === "outbox_recovered")).toBe(false);
    },
    240_000,
  );
});
