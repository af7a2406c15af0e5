// A miner's earnings and trust score, as upstream serves them (routers/miner.py
// get_miner_earnings, reputation router's trust-score), so the `earnings` command has a
// coordinator view to reconcile against on loopback:
//   POST /v1/miners/{miner_id}/earnings: upstream sums escrowed payments (`payment_amount`) of the
//     miner's COMPLETED jobs, 0 without escrow; the local coordinator has no escrow, so in
//     upstream mode every amount is 0 and in reference mode each job earns its signed receipt's price.
//   GET /v1/reputation/trust-score/{miner_id}: no auth; here the share of the miner's finished
//     jobs that completed (the local coordinator's own stand-in for upstream's calculator).
import { isValidMinerId } from "../coordinator/ids.js";
import type { CoordinatorCore } from "./core.js";
import { HttpFail, type Reply } from "./http.js";
import { asObj } from "./rules.js";

function receiptPrice(receipt: unknown): number {
  const p = asObj(receipt)["price"];
  return typeof p === "number" && Number.isFinite(p) && p > 0 ? p : 0;
}

export function minerEarnings(core: CoordinatorCore, minerId: string | null): Reply {
  if (!isValidMinerId(minerId)) throw new HttpFail(400, "invalid miner id");
  const escrowless = core.o.upstreamQuirks === true;
  const completed = [...core.state.jobs.values()].filter(
    (j) => j.state === "COMPLETED" && j.minerId === minerId,
  );
  let total = 0;
  const history = completed.map((j) => {
    const amount = escrowless ? 0 : receiptPrice(j.coordinatorReceipt);
    total += amount;
    return {
      job_id: j.jobId,
      amount: String(amount),
      currency: "AITBC",
      payment_status: escrowless ? "unknown" : "released",
    };
  });
  total = Math.round(total * 1e6) / 1e6;
  return {
    status: 200,
    json: {
      miner_id: minerId,
      total_earnings: total,
      pending_earnings: 0,
      paid_earnings: total,
      completed_jobs: completed.length,
      currency: "AITBC",
      from_time: null,
      to_time: null,
      earnings_history: history.slice(0, 20),
    },
  };
}

function level(score: number): string {
  if (score >= 0.9) return "expert";
  if (score >= 0.75) return "advanced";
  if (score >= 0.5) return "intermediate";
  return "beginner";
}

export function trustScore(core: CoordinatorCore, minerId: string | null): Reply {
  if (!isValidMinerId(minerId)) throw new HttpFail(400, "invalid miner id");
  if (!core.state.miners.has(minerId)) throw new HttpFail(404, "miner not found");
  let done = 0;
  let failed = 0;
  for (const j of core.state.jobs.values()) {
    if (j.minerId !== minerId) continue;
    if (j.state === "COMPLETED") done++;
    else if (j.state === "FAILED") failed++;
  }
  const reliability = done + failed === 0 ? 0.5 : done / (done + failed);
  const score = Math.round(reliability * 1e4) / 1e4;
  return {
    status: 200,
    json: {
      agent_id: minerId,
      composite_score: score,
      performance_score: score,
      reliability_score: score,
      community_score: 0.5,
      security_score: 0.5,
      economic_score: score,
      reputation_level: level(score),
      calculated_at: new Date(core.now()).toISOString(),
    },
  };
}
