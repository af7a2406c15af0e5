// Typed coordinator failures: the loop decides retry/drop/re-register from `kind` alone.

export type CoordinatorErrorKind =
  | "auth" // 401/403: wrong key; retrying will not help
  | "rate_limited" // 429: wait retryAfterMs
  | "not_found" // 404
  | "conflict" // 409
  | "client" // other 4xx: our request is wrong; do not retry
  | "server" // 5xx
  | "timeout" // request took longer than its limit
  | "network" // refused, reset, DNS...
  | "bad_response" // answer unparsable, too large, wrong shape
  | "aborted"; // we cancelled it ourselves (shutdown)

export class CoordinatorError extends Error {
  override readonly name = "CoordinatorError";
  constructor(
    readonly kind: CoordinatorErrorKind,
    message: string,
    readonly status: number | null = null,
    readonly retryAfterMs: number | null = null,
    options?: { cause?: unknown; bodyHead?: string | undefined },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.bodyHead = options?.bodyHead;
  }

  /** The first bytes of an answer over the size cap, when the request asked to keep them. */
  readonly bodyHead: string | undefined;

  /** Whether the same request may succeed later (docs/architecture.md#durability-rules: no retry on 4xx but 408/425/429). */
  get retryable(): boolean {
    switch (this.kind) {
      case "rate_limited":
      case "server":
      case "timeout":
      case "network":
      case "bad_response":
        return true;
      case "client":
        return this.status === 408 || this.status === 425;
      default:
        return false;
    }
  }
}

/**
 * A job the coordinator handed over (it is ours now) whose answer cannot be used as a job: too
 * large, unparsable, or an id that fails validation. The miner fails it back with `failureCode`
 * so the coordinator frees the slot; dropping it would leave the job RUNNING for ever.
 */
export class UnusableJobError extends Error {
  override readonly name = "UnusableJobError";
  constructor(
    readonly jobId: string,
    readonly failureCode: "payload_too_large" | "invalid_payload" | "invalid_job_id",
    message: string,
  ) {
    super(message);
  }
}
