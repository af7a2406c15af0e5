// The claim dialect's routes (the tutorial's /v1/jobs/*): register by body shape, list an
// available job, claim it, complete it.
import { z } from "zod";
import { isValidMinerId } from "../coordinator/ids.js";
import type { CoordinatorCore } from "./core.js";
import { type Handler, HttpFail, type Reply, validate } from "./http.js";
import { matchesConstraints } from "./match.js";

const claimRegister = z.object({
  miner_id: z.string().refine(isValidMinerId, "invalid miner_id"),
  capabilities: z.array(z.string().max(256)).max(1000),
  gpu_info: z.unknown().optional(),
});
const claimBody = z.looseObject({ miner_id: z.string().refine(isValidMinerId, "invalid miner_id") });
const completeBody = z.looseObject({
  miner_id: z.string().refine(isValidMinerId, "invalid miner_id"),
  result: z.string(),
  completed_at: z.string().optional(),
  receipt: z.unknown().optional(),
});

/** POST /v1/miners/register is shared: a `capabilities` list marks the claim dialect. */
export function isClaimRegister(body: unknown): boolean {
  return (
    typeof body === "object" &&
    body !== null &&
    Array.isArray((body as Record<string, unknown>)["capabilities"])
  );
}

export function claimRoutes(core: CoordinatorCore): Record<string, Handler> {
  const { state } = core;
  return {
    /** The claim-shaped POST /v1/miners/register (see isClaimRegister). */
    register(ctx): Reply {
      const b = validate(claimRegister, ctx.body);
      core.limit("register", ctx, b.miner_id);
      core.upsertMiner(b.miner_id, "claim", b.capabilities, 1, null);
      return { status: 200, json: { status: "ok" }, committed: true };
    },

    available(ctx): Reply {
      const minerId = ctx.url.searchParams.get("miner_id");
      if (!isValidMinerId(minerId)) throw new HttpFail(400, "missing or invalid miner_id");
      core.limit("poll", ctx, minerId);
      core.sweepLeases();
      const m = state.miners.get(minerId);
      for (const j of state.jobs.values()) {
        if (j.state !== "QUEUED") continue;
        if (m && !matchesConstraints(j.constraints, m.capabilities, m.region)) continue;
        return { status: 200, json: { ...j.payload, job_id: j.jobId } };
      }
      return { status: 204 };
    },

    claim(ctx, param): Reply {
      const b = validate(claimBody, ctx.body);
      const j = core.knownJob(param);
      if (j.state !== "QUEUED") throw new HttpFail(409, "job already claimed");
      state.assign(j, b.miner_id, core.now(), core.tick());
      state.save();
      core.emit({ type: "assigned", jobId: j.jobId, minerId: b.miner_id, attempt: j.attempts });
      return { status: 200, json: { status: "claimed", job_id: j.jobId }, committed: true };
    },

    complete(ctx, param): Reply {
      const b = validate(completeBody, ctx.body);
      core.limit("result", ctx, b.miner_id);
      const j = core.knownJob(param);
      return core.finish(
        j,
        b.miner_id,
        { output: b.result, completed_at: b.completed_at ?? null },
        null,
        b.receipt,
      );
    },
  };
}
