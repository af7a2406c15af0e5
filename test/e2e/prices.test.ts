// The real miner (composed as `run` composes it, the tiny model) with --price against the local
// coordinator in upstream mode: the price is advertised at register and sent with each result, a
// job whose max_price is below it is never handed over, and what the jobs earned is the same in
// the coordinator's signed receipts, the miner's /metrics counters and the `earnings` report.
import { afterEach, describe, expect, it } from "vitest";
import { register as registerEarnings } from "../../src/commands/earnings.js";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { silentLogger } from "../../src/log.js";
import { OpsMetrics } from "../../src/ops/metrics.js";
import { runCommand } from "../support/command-run.js";
import {
  coordinatorWithReceipts,
  fastOverrides,
  inferenceJob,
  minerConfig,
  startMiner,
} from "../support/harness.js";

type Obj = Record<string, unknown>;
let coordinator: LocalCoordinator | null = null;
afterEach(async () => {
  await coordinator?.close();
  coordinator = null;
});

/** The value of a series in Prometheus text (labels as given, in prom-client's order). */
function sample(text: string, name: string): number | null {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : null;
}

describe("prices, end to end", () => {
  it("advertises and bills its price; /metrics and `earnings` count the same amount", async () => {
    const started = await coordinatorWithReceipts({ upstreamQuirks: true });
    coordinator = started.coordinator;
    const c = coordinator;
    const tooCheap = c.enqueue({ ...inferenceJob(0), constraints: { max_price: 0.01 } });
    const ids = [1, 2].map((i) => c.enqueue({ ...inferenceJob(i), constraints: { max_price: 0.05 } }));
    const bad = c.enqueue({ payload: { model: "no-such-model", prompt: "hi" } });
    const metrics = new OpsMetrics();
    metrics.addWorker("w", { gpu: "cpu", uuid: "", miner_id: "test-miner" });
    const cfg = minerConfig(c.url, { price: 0.05, coordinatorKey: started.coordinatorKey.publicKeyHex });
    const miner = await startMiner(cfg, silentLogger(), {
      ...fastOverrides,
      onEvent: (e) => metrics.observe("w", e),
    });
    await c.waitFor(
      (x) => [...ids, bad].every((id) => ["COMPLETED", "FAILED"].includes(x.job(id)?.state ?? "")),
      120_000,
    );
    expect((await miner.stop()).code).toBe(0);

    expect((c.miners()[0]!.capabilities as Obj)["price"]).toBe(0.05);
    // Below the advertised price: never handed over.
    expect(c.job(tooCheap)!.state).toBe("QUEUED");
    expect(c.job(bad)!.state).toBe("FAILED");
    let units = 0;
    let amount = 0;
    for (const id of ids) {
      const j = c.job(id)!;
      expect(j.state).toBe("COMPLETED");
      const m = j.metrics as Obj;
      expect(m).toMatchObject({ unit_type: "gpu_seconds", unit_price: 0.05 });
      const r = j.coordinatorReceipt as Obj;
      expect(r["unit_price"]).toBe(0.05);
      expect(r["units"]).toBe(m["units"]);
      expect(r["price"]).toBe(Math.round((m["units"] as number) * 0.05 * 1e6) / 1e6);
      units += r["units"] as number;
      amount += r["price"] as number;
    }

    const text = await metrics.metrics();
    expect(sample(text, "aitbc_miner_earned_units_total")).toBeCloseTo(units, 9);
    expect(sample(text, "aitbc_miner_earnings_total")).toBeCloseTo(amount, 9);

    const res = await runCommand(
      [registerEarnings],
      [
        "earnings",
        "--state-dir",
        cfg.stateDir,
        "--json",
        "--coordinator-key",
        started.coordinatorKey.publicKeyHex,
      ],
    );
    expect(res.code, res.err).toBe(0);
    const report = JSON.parse(res.out) as {
      totals: Obj;
      rows: Obj[];
      reconciliation: { counts: Record<string, number> };
    };
    expect(report.totals["jobs"]).toBe(2);
    expect(report.totals["confirmed"]).toBe(2);
    expect(report.totals["failures"]).toBe(1);
    expect(report.totals["units"] as number).toBeCloseTo(units, 6);
    expect(report.totals["amount"] as number).toBeCloseTo(amount, 6);
    expect(report.rows.find((r) => r["model"] === "tiny")).toMatchObject({ gpu: "host", unitPrice: 0.05 });
    // Every job matches its signed receipt: nothing missing, no difference, every signature good.
    expect(Object.values(report.reconciliation.counts).every((n) => n === 0)).toBe(true);
  }, 180_000);
});
