// Every error_code a job can be failed with, in one union: what the coordinator (and an operator
// reading its job table) can see. Each producer's own union is a part of it.
import type { BackendErrorCode } from "../backends/types.js";
import type { UnusableJobError } from "../coordinator/errors.js";
import type { JobErrorCode } from "./screening.js";

export type FailureCode =
  /** The payload or constraints (screening, before anything runs). */
  | JobErrorCode
  /** The inference backend. */
  | BackendErrorCode
  /** A hand-out whose answer could not be used (over the size cap, unparsable, a bad id). */
  | UnusableJobError["failureCode"]
  /** VRAM admission: every GPU unreadable. */
  | "gpu_unavailable"
  /** Past its deadline, or the backend ignored the abort (wedged). */
  | "timeout"
  /** Handed over or running when the miner stopped without a grace period left. */
  | "shutting_down"
  /** Claimed before a restart whose deadline passed, or whose record was unreadable. */
  | "miner_restarted"
  /** The coordinator refused the computed result with a 4xx. */
  | "result_rejected"
  /** Listed by the coordinator as running on this miner, which has no record of it (recover.ts). */
  | "orphaned";
