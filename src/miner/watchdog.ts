// The watchdog around one generation: the job's deadline aborts it, and a backend that does not
// stop within the abort grace after an abort is wedged (a stuck GPU): WedgedError, which the loop
// turns into exit 70 so the service manager restarts the miner (the outbox keeps the results).
// The deadline is on the monotonic clock: a wall-clock step neither cuts a job short nor lets it run on.
import type { Backend, InferenceRequest, InferenceResult } from "../backends/types.js";
import { monotonicNow } from "../clock.js";

/** Why a job's AbortController fired (gpu_unavailable: the supervisor drained this worker's card (lost or sick), so the job cannot finish). */
export type AbortWhy = "deadline" | "shutting_down" | "gpu_unavailable";

export class WedgedError extends Error {
  override readonly name = "WedgedError";
}

/** Run the backend under the job's deadline (monotonic); a backend that ignores the abort is wedged. */
export async function generateWithDeadline(
  backend: Backend,
  req: InferenceRequest,
  abort: AbortController,
  deadlineAt: number,
  abortGraceMs: number,
): Promise<InferenceResult> {
  const gen = backend.generate(req, abort.signal);
  let deadlineTimer: NodeJS.Timeout | undefined;
  let wedgeTimer: NodeJS.Timeout | undefined;
  const armWedge = () =>
    new Promise<never>((_, reject) => {
      wedgeTimer = setTimeout(
        () =>
          reject(
            new WedgedError(
              `the ${backend.name} backend did not stop within ${abortGraceMs} ms of an abort: the GPU or backend is wedged; exiting so the service manager restarts the miner`,
            ),
          ),
        abortGraceMs,
      );
    });
  const wedged = new Promise<never>((_, reject) => {
    const onAbort = () => armWedge().catch(reject);
    if (abort.signal.aborted) onAbort();
    else abort.signal.addEventListener("abort", onAbort, { once: true });
    deadlineTimer = setTimeout(
      () => abort.abort("deadline" satisfies AbortWhy),
      Math.max(0, deadlineAt - monotonicNow()),
    );
  });
  try {
    return await Promise.race([gen, wedged]);
  } finally {
    clearTimeout(deadlineTimer);
    clearTimeout(wedgeTimer);
    gen.catch(() => undefined);
  }
}
