// Probes with Kubernetes' meaning, on the CLI: a model whose preflight takes longer than every
// probe limit but keeps moving is alive (/healthz 200) and not ready (/readyz 503) until the models
// are loaded and polls answered; one that stops moving makes /healthz fail, and pass again when it
// moves. The preflight is slowed by a stand-in loaded into its child (test/support/slow-preflight.mjs);
// the limits are set small with AITBC_HEALTH_LIMITS. Nothing here is timed: conditions are waited for.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { runPreflight } from "../../src/backends/llama/preflight.js";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { type Spawned, spawnCli } from "../support/cli.js";
import { API_KEY, coordinatorWithReceipts, inferenceJob, modelsDir, repoRoot } from "../support/harness.js";
import { named, opsUrl, probe, sampleProbes, until } from "../support/probes.js";

const hook = pathToFileURL(join(repoRoot, "test", "support", "slow-preflight.mjs")).href;
/**
 * The slowed preflight (8 s) outlasts the limits that apply while it runs (preflight 5 s, poll
 * 3 s). The real preflight after it starts the runtime silently, which takes seconds on a busy
 * host: 5 s, not 3, leaves it room; the load's own 10 s does the same for the load.
 */
const LIMITS = "poll=3,warm-up=3,preflight=5,load=10,job=3";
const SLOW_MS = 8_000;

let coordinator: LocalCoordinator | null = null;
let miner: Spawned | null = null;
afterEach(async () => {
  miner?.child.kill("SIGKILL");
  await miner?.exit;
  miner = null;
  await coordinator?.close();
  coordinator = null;
});

function startMiner(url: string, slow: string): Spawned {
  return spawnCli(
    [
      "run",
      ...["--coordinator", url, "--api-key", API_KEY, "--miner-id", "probe-miner", "--models", modelsDir],
      ...["--threads", "1", "--gpu", "cpu", "--state-dir", mkdtempSync(join(tmpdir(), "probe-state-"))],
      ...["--metrics-port", "0", "--heartbeat-interval", "1", "--long-poll", "0", "--log-level", "info"],
    ],
    { NODE_OPTIONS: `--import=${hook}`, SLOW_PREFLIGHT: slow, AITBC_HEALTH_LIMITS: LIMITS },
  );
}

describe("probes during a long model preflight", () => {
  it("a preflight longer than every limit that keeps moving: alive throughout, ready only once polling", async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    const job = coordinator.enqueue(inferenceJob(1));
    miner = startMiner(coordinator.url, `progress:${SLOW_MS}`);
    const m = miner;
    const base = await opsUrl(m);
    const sampler = sampleProbes(base, m);
    await coordinator.waitFor((c) => c.job(job)?.state === "COMPLETED", 180_000);
    await until("/readyz 200", async () => (await probe(base, "/readyz", m)).status === 200, m);
    const samples = await sampler.stop();

    const live = samples.filter((s) => s.path === "/healthz");
    expect(live.filter((s) => s.status !== 200)).toEqual([]);
    // While the preflight ran (started before the request, not ended after its answer).
    const during = samples.filter(
      (s) => s.before.has("model_preflight_started") && !s.after.has("model_preflight_ended"),
    );
    expect(during.filter((s) => s.path === "/healthz").length).toBeGreaterThan(5);
    for (const s of during.filter((s) => s.path === "/readyz")) {
      expect(s.status).toBe(503);
      expect(s.reasons).toContain("not polling yet: loading the models to serve");
      if (s.after.has("model_preflight_progress"))
        expect(s.reasons).toContainEqual(
          expect.stringMatching(/^the preflight of model tiny \(\d+ %\): under way/),
        );
    }

    // Logged: start, progress (at most every 5 s), end; then the load, then warm, then the job.
    const [started] = named(m, "model_preflight_started");
    expect(started).toMatchObject({ model: "tiny" });
    const progress = named(m, "model_preflight_progress");
    expect(progress.length).toBeGreaterThanOrEqual(1);
    expect(progress[0]).toMatchObject({ model: "tiny", phase: "test-delay", pct: expect.any(Number) });
    const [ended] = named(m, "model_preflight_ended");
    expect(ended).toMatchObject({ model: "tiny", outcome: "ok" });
    expect(ended!["ms"]).toBeGreaterThanOrEqual(SLOW_MS); // longer than its limits, by construction
    expect(named(m, "model_load_started")).toHaveLength(1);
    expect(named(m, "model_load_ended")[0]).toMatchObject({ model: "tiny", outcome: "ok" });
    const order = ["model_preflight_started", "model_preflight_ended", "model_load_ended", "models_warm"];
    const at = (e: string) => m.stderr().indexOf(`"event":"${e}"`);
    expect(order.map(at)).toEqual([...order.map(at)].sort((a, b) => a - b));
    expect(at("models_warm")).toBeLessThan(at("job_started"));
    expect(at("job_started")).toBeGreaterThan(0);

    m.child.kill("SIGTERM");
    expect((await m.exit).code).toBe(0);
  });

  it("a preflight that stops moving fails /healthz, naming it; moving again, it passes", async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    const job = coordinator.enqueue(inferenceJob(2));
    miner = startMiner(coordinator.url, `stall:${SLOW_MS + 2000}`); // 5 s in the limit, 5 s past it
    const m = miner;
    const base = await opsUrl(m);
    const stuck = await until(
      "/healthz 503",
      async () => {
        const s = await probe(base, "/healthz", m);
        return s.status === 503 ? s : null;
      },
      m,
    );
    expect(stuck.reasons).toEqual([
      expect.stringMatching(/^the preflight of model tiny has made no progress for \d+ s \(limit 5 s\)$/),
      "not polling yet: loading the models to serve",
      expect.stringMatching(/^loading model tiny: under way for \d+ s$/),
    ]);
    // The child stalled for good would be killed at the preflight's own time limit; this one resumes.
    await until("/healthz 200 again", async () => (await probe(base, "/healthz", m)).status === 200, m);
    await coordinator.waitFor((c) => c.job(job)?.state === "COMPLETED", 180_000);
    expect(named(m, "model_preflight_ended")[0]).toMatchObject({ outcome: "ok" });
    m.child.kill("SIGTERM");
    expect((await m.exit).code).toBe(0);
  });
});

describe("the preflight child", () => {
  it("reports its steps while it works: the runtime, the load up to 100 %, the context, the evaluation", async () => {
    const steps: { fraction: number | null; phase: string | null }[] = [];
    const r = await runPreflight(join(modelsDir, "tiny.gguf"), 120_000, (fraction, phase) =>
      steps.push({ fraction, phase }),
    );
    expect(r).toEqual({ ok: true });
    const phases = steps.flatMap((s) => (s.phase ? [s.phase] : []));
    expect(phases.filter((p, i) => p !== phases[i - 1])).toEqual(["runtime", "load", "context", "evaluate"]);
    const load = steps.filter((s) => s.phase === "load").map((s) => s.fraction);
    expect(load[0]).toBe(0);
    expect(load.at(-1)).toBe(1);
    expect([...load].sort((a, b) => a! - b!)).toEqual(load); // never backwards
  });
});
