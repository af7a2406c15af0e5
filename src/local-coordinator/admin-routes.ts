// /_admin/* (only with the `admin` option, as the child-process entry main.ts sets it): enqueue a
// job with POST, read the jobs, stats and miners with GET.
import type { CoordinatorCore } from "./core.js";
import type { Handler } from "./http.js";
import type { NewJob } from "./state.js";

export function adminRoutes(core: CoordinatorCore): Record<string, Handler> {
  return {
    // enqueue validates the job (400 on a bad one).
    admin_enqueue: (ctx) => ({ status: 201, json: { job_id: core.enqueue(ctx.body as NewJob) } }),
    admin_jobs: () => ({ status: 200, json: core.jobs() }),
    admin_stats: () => ({ status: 200, json: core.stats() }),
    admin_miners: () => ({ status: 200, json: core.miners() }),
  };
}
