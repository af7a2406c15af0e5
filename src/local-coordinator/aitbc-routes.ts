// The aitbc dialect's routes (/v1/miners/*): register with a session token, heartbeat, poll
// (held when long-polling), result, fail, deregister, and the miner's job listing.
import { randomUUID } from "node:crypto";
import { z } from "zod";
import { isValidMinerId } from "../coordinator/ids.js";
import type { CoordinatorCore } from "./core.js";
import { type Ctx, type Handler, HttpFail, type Reply, validate } from "./http.js";
import { holdPoll } from "./long-poll.js";
import { minerJobs } from "./miner-jobs.js";

const aitbcRegister = z.object({
  capabilities: z.record(z.string(), z.unknown()),
  concurrency: z.number().int().min(1).max(1024).default(1),
  region: z.string().max(64).nullish(),
});
const heartbeatBody = z.looseObject({
  inflight: z.number().int().min(0).optional(),
  status: z.string().optional(),
  metadata: z.unknown().optional(),
});
const resultBody = z.looseObject({ result: z.looseObject({}), metrics: z.unknown().optional() });
const failBody = z.looseObject({
  error_code: z.string().min(1).max(200),
  error_message: z.string().max(10_000).default(""),
});

export function minerFromHeader(ctx: Ctx): string {
  const id = ctx.minerHeader;
  if (!isValidMinerId(id)) throw new HttpFail(400, "missing or invalid X-Miner-ID header");
  return id;
}

export function aitbcRoutes(core: CoordinatorCore): Record<string, Handler> {
  const { state } = core;
  return {
    register(ctx): Reply {
      const minerId = minerFromHeader(ctx);
      core.limit("register", ctx, minerId);
      const b = validate(aitbcRegister, ctx.body);
      core.upsertMiner(minerId, "aitbc", b.capabilities, b.concurrency, b.region ?? null);
      const token = randomUUID();
      core.sessions.set(token, minerId);
      return { status: 200, json: { status: "ok", session_token: token }, committed: true };
    },

    heartbeat(ctx): Reply {
      const minerId = minerFromHeader(ctx);
      core.limit("heartbeat", ctx, minerId);
      const b = validate(heartbeatBody, ctx.body);
      const m = state.miners.get(minerId);
      if (!m) throw new HttpFail(404, "miner not registered");
      m.lastHeartbeatAt = core.now();
      m.reportedInflight = b.inflight ?? null;
      m.metadata = b.metadata ?? null;
      m.status = b.status ?? "ONLINE";
      core.rules.heartbeat(m, b.inflight);
      core.emit({ type: "heartbeat", minerId, inflight: m.reportedInflight });
      return { status: 200, json: { status: "ok" } };
    },

    poll(ctx): Reply | Promise<Reply> {
      const minerId = minerFromHeader(ctx);
      core.limit("poll", ctx, minerId);
      const reply = core.handOut(minerId);
      return reply.status === 204 ? holdPoll(core, ctx, minerId) : reply;
    },

    result(ctx, param): Reply {
      const minerId = minerFromHeader(ctx);
      core.limit("result", ctx, minerId);
      const b = validate(resultBody, ctx.body);
      const j = core.knownJob(param);
      return core.finish(j, minerId, b.result, b.metrics ?? null, b.result["receipt"]);
    },

    fail(ctx, param): Reply {
      const minerId = minerFromHeader(ctx);
      const b = validate(failBody, ctx.body);
      const j = core.knownJob(param);
      const verdict = core.rules.failVerdict(
        j,
        minerId,
        { code: b.error_code, message: b.error_message },
        core.o.requeueOnFail === true,
      );
      const requeue = verdict.requeue;
      j.error = verdict.error;
      core.counters.failures++;
      if (requeue) {
        state.requeue(j);
        core.counters.requeued++;
      } else {
        j.state = "FAILED";
        j.completedAt = core.now();
      }
      state.save();
      core.emit({ type: "failed", jobId: j.jobId, minerId, errorCode: b.error_code, requeued: requeue });
      return { status: 200, json: { status: "ok" }, committed: true };
    },

    miner_jobs: (ctx, param) => minerJobs(core, ctx, param),

    deregister(_ctx, param): Reply {
      if (!isValidMinerId(param)) throw new HttpFail(400, "invalid miner id");
      const { json, requeued } = core.rules.deregister(state, param);
      for (const [token, id] of core.sessions) if (id === param) core.sessions.delete(token);
      core.counters.requeued += requeued;
      state.save();
      core.emit({ type: "deregistered", minerId: param, requeued });
      return { status: 200, json, committed: true };
    },
  };
}
