// `POST /v1/miners/{miner_id}/jobs?job_status=&limit=&offset=`: the jobs assigned to a miner, as
// upstream lists them (routers/miner.py list_miner_jobs, JobService.to_view), in both modes, so a
// miner can ask what the coordinator says it holds (docs/protocols.md).
import { isValidMinerId } from "../coordinator/ids.js";
import type { CoordinatorCore } from "./core.js";
import { type Ctx, HttpFail, type Reply } from "./http.js";
import type { LocalJob } from "./state.js";

const STATES = new Set(["QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELED"]);

/** Upstream's `int` query parameter: a bad one is a 422 there. */
function intParam(url: URL, name: string, fallback: number): number {
  const raw = url.searchParams.get(name);
  if (raw === null) return fallback;
  if (!/^-?\d+$/.test(raw.trim()))
    throw new HttpFail(422, `${name}: not an integer`, { detail: [{ loc: ["query", name] }] });
  return Number(raw);
}

export function view(j: LocalJob): Record<string, unknown> {
  return {
    job_id: j.jobId,
    state: j.state,
    assigned_miner_id: j.minerId,
    requested_at: new Date(j.createdAt).toISOString(),
    error: j.error?.message ?? null,
    payload: j.payload,
    result: j.state === "COMPLETED" ? j.result : null,
  };
}

export function minerJobs(core: CoordinatorCore, ctx: Ctx, minerId: string | null): Reply {
  if (!isValidMinerId(minerId)) throw new HttpFail(400, "invalid miner id");
  const limit = intParam(ctx.url, "limit", 20);
  const offset = intParam(ctx.url, "offset", 0);
  // An unknown status is ignored, as upstream's `JobState(...)` ValueError is.
  const wanted = ctx.url.searchParams.get("job_status")?.toUpperCase() ?? null;
  const state = wanted !== null && STATES.has(wanted) ? wanted : null;
  // A job's miner is the one that holds (RUNNING) or last held it; newest first, as upstream orders.
  const jobs = [...core.state.jobs.values()]
    .filter((j) => j.minerId === minerId && (state === null || j.state === state))
    .sort((a, b) => b.createdAt - a.createdAt)
    .slice(Math.max(0, offset), Math.max(0, offset) + Math.max(0, limit))
    .map(view);
  return { status: 200, json: { jobs, total: jobs.length, limit, offset, miner_id: minerId } };
}
