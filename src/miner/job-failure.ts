// How a generation that threw ends: the one table from the error and the abort's reason to the
// failure verdict (error_code and message) the coordinator sees, or to no verdict at all when the
// coordinator cancelled the job.
import { BackendError } from "../backends/types.js";
import type { FailureCode } from "./failure-codes.js";
import { CANCELLED } from "./job-cancel.js";
import { type AbortWhy, WedgedError } from "./watchdog.js";

export type GenerationEnd =
  /** The coordinator no longer runs the job for us: no verdict is owed. */
  | { kind: "cancelled" }
  /** A failure verdict; `wedged`: the backend ignored the abort, so the miner must stop (exit 70). */
  | { kind: "failed"; code: FailureCode; message: string; wedged: boolean };

/** Why the job was aborted → its verdict; `budgetS`: the time the job was given. */
const BY_ABORT: Record<AbortWhy, (budgetS: number) => { code: FailureCode; message: string }> = {
  deadline: (budgetS) => ({ code: "timeout", message: `job exceeded its deadline of ${budgetS} s` }),
  shutting_down: () => ({ code: "shutting_down", message: "the miner is shutting down" }),
  gpu_unavailable: () => ({
    code: "gpu_unavailable",
    message: "this worker's GPU was drained (lost or sick): the job cannot finish here",
  }),
};

function isAbortWhy(reason: unknown): reason is AbortWhy {
  return typeof reason === "string" && Object.hasOwn(BY_ABORT, reason);
}

/**
 * `reason`: the job's abort signal's reason (undefined when nothing aborted it). A wedged backend
 * is a failure even when the job was cancelled: the miner stops, and the verdict closes the job.
 */
export function generationEnd(err: unknown, reason: unknown, budgetS: number): GenerationEnd {
  if (err instanceof WedgedError)
    return { kind: "failed", code: "timeout", message: err.message, wedged: true };
  if (reason === CANCELLED) return { kind: "cancelled" };
  if (isAbortWhy(reason)) return { kind: "failed", ...BY_ABORT[reason](budgetS), wedged: false };
  const message = (err as Error)?.message ?? String(err);
  if (err instanceof BackendError) return { kind: "failed", code: err.code, message, wedged: false };
  return { kind: "failed", code: "inference_failed", message, wedged: false };
}

/** A claim that cannot be journaled at all (e.g. nesting too deep to serialize): no valid job looks like that. */
export function unstorablePayload(err: unknown): { code: FailureCode; message: string } {
  return { code: "invalid_payload", message: `the payload cannot be stored: ${(err as Error).message}` };
}
