// Public shapes of the local coordinator (options, stats, events, the handle it returns).
import type { Logger } from "../log.js";
import type { FaultKind, FaultOptions } from "./faults.js";
import type { RateLimits } from "./rate-limit.js";
import type { LocalJob, LocalMiner, NewJob, ReceiptCheck } from "./state.js";

export interface LocalCoordinatorOptions {
  /** Default 127.0.0.1 (loopback only). */
  host?: string;
  /** Default 0: a free port. */
  port?: number;
  /** Accepted X-Api-Key values (also accepted as a bearer token). None: no authentication. */
  apiKeys?: string[];
  /** The claim dialect is unauthenticated, as in the tutorial, unless this is true. */
  claimRequiresKey?: boolean;
  rateLimits?: Partial<RateLimits>;
  /**
   * A RUNNING job not finished within this many ms is requeued (default 600 000; 0 = never).
   * Ignored with upstreamQuirks, as is requeueOnFail.
   */
  leaseTimeoutMs?: number;
  /**
   * Behave as the real upstream coordinator (docs/protocols.md#how-the-upstream-coordinator-behaves): /fail keeps the miner's slot, failures
   * are terminal, results are accepted again with a new receipt, no leases, /v1/health is 404,
   * a poll from an unknown miner is a 500. Default false (the reference semantics).
   */
  upstreamQuirks?: boolean;
  /**
   * Hold a poll that finds no job for up to this many seconds (capping the miner's
   * max_wait_seconds), answering as soon as a job is queued. Default 0: answer at once, as the
   * reference coordinator does.
   */
  longPollMaxSeconds?: number;
  /** Requeue a job reported failed (always done for "shutting_down" and "miner_restarted"). */
  requeueOnFail?: boolean;
  /** Largest request body accepted (default 1 MiB); larger → 413. */
  maxBodyBytes?: number;
  /** Checks the miner's receipt; the outcome is recorded on the job. */
  verifyReceipt?: (receipt: unknown) => ReceiptCheck;
  /**
   * Signs a coordinator receipt; when given, results are answered with
   * `{status:"ok", receipt}`. A string is taken as the receipt's raw JSON text.
   */
  signReceipt?: (payload: Record<string, unknown>) => Record<string, unknown> | string;
  /** Job and miner tables persist here (atomic rewrite on each change). */
  stateFile?: string;
  faults?: FaultOptions;
  /** Expose /_admin/jobs, /_admin/stats, /_admin/miners (the child-process entry, main.ts, turns it on). */
  admin?: boolean;
  log?: Logger;
  /** Called for each event (job enqueued, handed over, completed...). */
  onEvent?: (event: CoordinatorEvent) => void;
  /** Wall clock (ms) for the timestamps it records and signs; tests step it. */
  now?: () => number;
  /**
   * Clock (ms) for leases, rate windows and held polls: monotonic by default, so a wall-clock step
   * expires no lease and empties no window; `now` when only that is given (tests of leases).
   */
  tick?: () => number;
}

export type CoordinatorEvent =
  | { type: "enqueued"; jobId: string }
  | { type: "registered"; minerId: string; dialect: "aitbc" | "claim"; concurrency: number }
  | { type: "deregistered"; minerId: string; requeued: number }
  | { type: "heartbeat"; minerId: string; inflight: number | null }
  | { type: "assigned"; jobId: string; minerId: string; attempt: number }
  | { type: "completed"; jobId: string; minerId: string; receiptCheck: ReceiptCheck | null }
  | { type: "duplicate"; jobId: string; minerId: string }
  | { type: "failed"; jobId: string; minerId: string; errorCode: string; requeued: boolean }
  | { type: "lease_expired"; jobId: string; minerId: string | null }
  | { type: "cancelled"; jobId: string; minerId: string | null }
  | { type: "rate_limited"; route: string; client: string; retryAfterMs: number }
  | { type: "auth_failed"; route: string }
  | { type: "fault"; kind: FaultKind; route: string };

export interface LocalCoordinatorStats {
  requests: number;
  /** Requests per route, keyed "METHOD /path/{param}" (e.g. "POST /v1/miners/{job_id}/result"). */
  byRoute: Record<string, number>;
  byStatus: Record<string, number>;
  jobs: {
    total: number;
    queued: number;
    running: number;
    completed: number;
    failed: number;
    cancelled: number;
  };
  completions: number;
  duplicateSubmissions: number;
  failures: number;
  requeued: number;
  leaseExpired: number;
  rateLimited: number;
  authFailures: number;
  receipts: { verified: number; rejected: number };
  faults: Record<FaultKind, number>;
}

export interface LocalCoordinator {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  enqueue(job: NewJob): string;
  job(jobId: string): LocalJob | undefined;
  /** Cancel a QUEUED or RUNNING job, as a client's `POST /v1/jobs/{id}/cancel` does; false when already final. */
  cancel(jobId: string): boolean;
  jobs(): LocalJob[];
  miners(): LocalMiner[];
  stats(): LocalCoordinatorStats;
  /** Resolve once `predicate` holds (checked on each event and every 25 ms); reject after timeoutMs. */
  waitFor(predicate: (c: LocalCoordinator) => boolean, timeoutMs?: number): Promise<void>;
  /** Subscribe to events; returns the unsubscribe function. */
  on(listener: (event: CoordinatorEvent) => void): () => void;
  /** Requeue RUNNING jobs past their lease now; returns how many. */
  sweepLeases(): number;
  close(): Promise<void>;
}
