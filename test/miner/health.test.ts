// /healthz and /readyz with Kubernetes' meaning: live fails only when work that should move has not,
// each kind past its own limit (preflight, load, warm-up, poll loop, job); ready needs polling.
import { afterEach, describe, expect, it, vi } from "vitest";
import type { BackendActivity, BackendProgress } from "../../src/backends/activity.js";
import { monotonicNow } from "../../src/clock.js";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { type HealthFacts, minerHealth } from "../../src/miner/health.js";
import {
  DEFAULT_HEALTH_LIMITS,
  type HealthLimits,
  parseHealthLimits,
  resolveHealthLimits,
} from "../../src/miner/health-limits.js";
import { Miner } from "../../src/miner/loop.js";
import { LoopWatch } from "../../src/miner/loop-watch.js";
import { answer, scriptedBackend } from "../support/backends.js";
import { coordinatorWithReceipts } from "../support/harness.js";
import { testMinerDeps } from "../support/miner-deps.js";

let coordinator: LocalCoordinator | null = null;
afterEach(async () => {
  vi.unstubAllEnvs();
  await coordinator?.close();
  coordinator = null;
});

const limits: HealthLimits & { abortGraceMs: number } = {
  ...DEFAULT_HEALTH_LIMITS,
  pollStallMs: 1000,
  warmUpStallMs: 2000,
  preflightStallMs: 3000,
  loadStallMs: 4000,
  loadMsPerGiB: 1000,
  abortGraceMs: 500,
};

const facts = (over: Partial<HealthFacts> = {}): HealthFacts => ({
  fatal: null,
  jobs: [],
  pollDueBy: null,
  pollMovedAt: 0,
  warmUp: null,
  backend: null,
  notPolling: null,
  stopping: false,
  registered: true,
  servableModels: 1,
  stateWritable: true,
  ...over,
});

const activity = (over: Partial<BackendActivity>): BackendActivity => ({
  kind: "preflight",
  model: "big",
  path: "/m/big.gguf",
  sizeBytes: 2 * 2 ** 30,
  startedAt: 0,
  progressAt: 0,
  fraction: null,
  phase: null,
  reportsProgress: true,
  ...over,
});

describe("liveness", () => {
  it("a preflight that keeps moving is alive however long it takes; one that stops is not", () => {
    const t = 3_600_000; // an hour into the preflight: far past every limit
    const moving = activity({ startedAt: 0, progressAt: t - 2900, fraction: 0.4 });
    const busy = facts({ warmUp: { startedAt: 0 }, backend: { active: [moving], lastProgressAt: t - 2900 } });
    expect(minerHealth(busy, limits, t)).toMatchObject({ live: true });
    const stalled = facts({
      warmUp: { startedAt: 0 },
      backend: { active: [{ ...moving, progressAt: t - 3100 }], lastProgressAt: t - 3100 },
    });
    const h = minerHealth(stalled, limits, t);
    expect(h.live).toBe(false);
    expect(h.reasons).toContain("the preflight of model big (40 %) has made no progress for 3 s (limit 3 s)");
  });

  it("a load that reports no progress has the load limit plus its size's share", () => {
    const load = activity({ kind: "load", reportsProgress: false, startedAt: 100, progressAt: 100 });
    const at = (now: number) =>
      minerHealth(facts({ backend: { active: [load], lastProgressAt: 100 } }), limits, now);
    // 4 s + 2 GiB × 1 s
    expect(at(100 + 6000).live).toBe(true);
    expect(at(100 + 6001)).toMatchObject({
      live: false,
      reasons: [expect.stringMatching(/^loading model big/)],
    });
    const runtime = activity({
      kind: "runtime",
      model: "",
      path: null,
      sizeBytes: null,
      reportsProgress: false,
    });
    const r = minerHealth(facts({ backend: { active: [runtime], lastProgressAt: 0 } }), limits, 4001);
    expect(r.reasons).toEqual([
      expect.stringMatching(/^starting the inference runtime has made no progress/),
    ]);
  });

  it("warm-up between backend steps has its own limit, counted from the backend's last progress", () => {
    const f = facts({ warmUp: { startedAt: 0 }, backend: { active: [], lastProgressAt: 10_000 } });
    expect(minerHealth(f, limits, 12_000).live).toBe(true);
    expect(minerHealth(f, limits, 12_001)).toMatchObject({
      live: false,
      reasons: ["warm-up has made no progress for 2 s"],
    });
    // While a backend step runs, that step's own limit applies, not warm-up's.
    const running = facts({
      warmUp: { startedAt: 0 },
      backend: { active: [activity({ progressAt: 20_000 })], lastProgressAt: 20_000 },
    });
    expect(minerHealth(running, limits, 22_500).live).toBe(true);
  });

  it("the poll loop is stuck only past the wait it planned plus its limit, and never while parked", () => {
    expect(minerHealth(facts({ pollDueBy: 5000, pollMovedAt: 0 }), limits, 5000).live).toBe(true);
    expect(minerHealth(facts({ pollDueBy: 5000, pollMovedAt: 0 }), limits, 5001)).toMatchObject({
      live: false,
      reasons: ["the poll loop has not moved for 5 s"],
    });
    expect(minerHealth(facts({ pollDueBy: null }), limits, 1e12).live).toBe(true);
    expect(minerHealth(facts({ pollDueBy: 5000, stopping: true }), limits, 1e12).live).toBe(true);
  });

  it("a job past its deadline plus the overrun is a wedged backend", () => {
    const f = facts({ jobs: [{ jobId: "j1", deadlineAt: 1000 }] });
    expect(minerHealth(f, limits, 1000 + 5500).live).toBe(true); // abort grace + 5 s
    expect(minerHealth(f, limits, 1000 + 5501).reasons).toEqual([
      "job j1 is 6 s past its deadline: the backend is wedged",
    ]);
    expect(minerHealth(f, { ...limits, jobOverrunMs: 100 }, 1101).live).toBe(false);
  });
});

describe("readiness", () => {
  it("is 503 until registered with a model and polling, with the reason", () => {
    expect(minerHealth(facts(), limits, 0)).toEqual({ live: true, ready: true, reasons: [] });
    const loading = minerHealth(
      facts({ notPolling: "not polling yet: loading the models to serve" }),
      limits,
      0,
    );
    expect(loading).toEqual({
      live: true,
      ready: false,
      reasons: ["not polling yet: loading the models to serve"],
    });
    expect(minerHealth(facts({ registered: false }), limits, 0).ready).toBe(false);
    expect(minerHealth(facts({ servableModels: 0 }), limits, 0).ready).toBe(false);
    expect(minerHealth(facts({ stateWritable: false }), limits, 0).ready).toBe(false);
    expect(minerHealth(facts({ stopping: true }), limits, 0)).toMatchObject({ live: true, ready: false });
  });
});

describe("the poll loop's watch", () => {
  it("each wait it names moves its deadline; parked has none; answers and failures set readiness", () => {
    let now = 1000;
    const w = new LoopWatch({ pollStallMs: 500 }, () => now);
    expect(w.facts()).toMatchObject({ pollDueBy: null, notPolling: "not polling yet: starting" });
    w.moved(20_000); // e.g. a long Retry-After
    expect(w.facts().pollDueBy).toBe(1000 + 20_000 + 500);
    now = 5000;
    w.parked();
    expect(w.facts()).toMatchObject({ pollDueBy: null, pollMovedAt: 5000 });
    w.warmUpStarted();
    expect(w.facts()).toMatchObject({
      warmUp: { startedAt: 5000 },
      notPolling: expect.stringMatching(/loading/),
    });
    w.warmUpEnded();
    w.polled(undefined);
    expect(w.facts()).toMatchObject({ warmUp: null, notPolling: null, pollDueBy: 5500 });
    w.polled(new Error("connection refused"));
    expect(w.facts().notPolling).toBe("not polling: the last poll failed (connection refused)");
  });
});

describe("health limits", () => {
  it("are read from AITBC_HEALTH_LIMITS in seconds; settings win; a bad one is named", () => {
    expect(parseHealthLimits("poll=1.5, preflight=300,load-per-gib=10,job=2,warm-up=0.25")).toEqual({
      pollStallMs: 1500,
      preflightStallMs: 300_000,
      loadMsPerGiB: 10_000,
      jobOverrunMs: 2000,
      warmUpStallMs: 250,
    });
    const env = { AITBC_HEALTH_LIMITS: "poll=2,load=3" };
    expect(resolveHealthLimits({ loadStallMs: 7 }, env)).toMatchObject({ pollStallMs: 2000, loadStallMs: 7 });
    expect(resolveHealthLimits(undefined, {})).toEqual(DEFAULT_HEALTH_LIMITS);
    expect(() => parseHealthLimits("poll=fast")).toThrow(/AITBC_HEALTH_LIMITS: cannot read "poll=fast"/);
    expect(() => parseHealthLimits("nap=3")).toThrow(/poll, warm-up, preflight, load, load-per-gib, job/);
  });
});

describe("a miner warming up a model whose load outlasts every limit", () => {
  it("is alive while the load moves, stuck when it stops, and ready once warm and polling", async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    const c = coordinator;
    // The backend's preflight of "m": moving (its last progress is now) until frozen.
    let frozenAt: number | null = null;
    const progress = (): BackendProgress => {
      const at = frozenAt ?? monotonicNow();
      const a = { kind: "preflight", model: "m", path: "/m.gguf", sizeBytes: null, startedAt: 0 } as const;
      return {
        active: warm ? [{ ...a, progressAt: at, fraction: 0.5, phase: "load", reportsProgress: true }] : [],
        lastProgressAt: at,
      };
    };
    let warm = true;
    let endWarmUp: () => void = () => {};
    const warmedUp = new Promise<void>((r) => {
      endWarmUp = r;
    });
    const backend = { ...scriptedBackend("m", async (req) => answer(req)), progress };
    const deps = testMinerDeps({
      url: c.url,
      backend,
      settings: { health: { pollStallMs: 200, warmUpStallMs: 200, preflightStallMs: 300, loadStallMs: 200 } },
    });
    const miner = new Miner({
      ...deps,
      warmUp: async () => {
        await warmedUp;
        warm = false;
        return ["m"];
      },
    });
    const done = miner.run();
    await c.waitFor((x) => x.miners().length === 1, 60_000);
    // Well past every limit (each a few hundred ms), the load still moving: alive, not ready.
    const t0 = monotonicNow();
    await vi.waitFor(() => expect(monotonicNow() - t0).toBeGreaterThan(1000), {
      timeout: 60_000,
      interval: 50,
    });
    expect(miner.health()).toEqual({
      live: true,
      ready: false,
      reasons: [
        "not polling yet: loading the models to serve",
        expect.stringMatching(/^the preflight of model m \(50 %\): under way for \d+ s$/),
      ],
    });
    frozenAt = monotonicNow();
    await vi.waitFor(() => expect(miner.health().live).toBe(false), { timeout: 60_000, interval: 50 });
    expect(miner.health().reasons[0]).toMatch(/^the preflight of model m \(50 %\) has made no progress for/);
    frozenAt = null;
    endWarmUp();
    await vi.waitFor(() => expect(miner.health()).toEqual({ live: true, ready: true, reasons: [] }), {
      timeout: 60_000,
      interval: 50,
    });
    await miner.shutdown("test over");
    expect((await done).code).toBe(0);
  });

  it("a bad AITBC_HEALTH_LIMITS stops the miner with exit 2, naming it", async () => {
    vi.stubEnv("AITBC_HEALTH_LIMITS", "poll=soon");
    const deps = testMinerDeps({
      url: "http://127.0.0.1:9",
      backend: scriptedBackend("m", async (r) => answer(r)),
    });
    const exit = await new Miner(deps).run();
    expect(exit).toMatchObject({
      code: 2,
      reason: expect.stringMatching(/^AITBC_HEALTH_LIMITS: cannot read/),
    });
  });
});
