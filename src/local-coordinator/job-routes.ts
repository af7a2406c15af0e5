// The client's job routes both dialects share: cancel a job (upstream's client route
// `POST /v1/jobs/{job_id}/cancel`), and read one job's state (`GET /v1/jobs/{job_id}`, the view
// upstream's client route answers), which a claim-dialect miner asks to learn that a job it runs
// was cancelled or handed to someone else.
import type { CoordinatorCore } from "./core.js";
import type { Handler, Reply } from "./http.js";
import { view } from "./miner-jobs.js";

export function jobRoutes(core: CoordinatorCore): Record<string, Handler> {
  return {
    cancel(_ctx, param): Reply {
      const j = core.knownJob(param);
      // A job already final is answered as it is, as upstream's cancel_job leaves it.
      const changed = core.cancel(j.jobId);
      const { payload: _p, result: _r, ...rest } = view(j);
      return { status: 200, json: rest, committed: changed };
    },
    job_view(_ctx, param): Reply {
      const { payload: _p, result: _r, ...rest } = view(core.knownJob(param));
      return { status: 200, json: rest };
    },
  };
}
