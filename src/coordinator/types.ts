// Contract between the miner loop and a coordinator dialect (docs/protocols.md).

/** A dialect's name as registered in the dialect table (src/coordinator/dialects.ts): "aitbc", "claim". */
export type Protocol = string;

/**
 * What a dialect's wire allows, as the miner needs to know it. The miner reads these and never
 * compares dialect names, so a new dialect changes its behaviour through its table row alone.
 * (Whether the coordinator lists the jobs it runs for this miner is the client's optional
 * `runningJobs`/`jobsNoLongerOurs` methods: a dialect without a listing leaves them out.)
 */
export interface DialectTraits {
  /** Polls may ask the coordinator to hold them (`max_wait_seconds`); without it every poll asks for no wait. */
  longPoll: boolean;
  /**
   * Several polls may be in flight at once (a backlog round sends one per free slot); without it
   * the polls of one round would race each other for the same listed job, so one is sent at a time.
   */
  parallelPolls: boolean;
  /**
   * The coordinator publishes a poll limit per window (`--polls-per-minute`) that the poll budget
   * keeps to; without it polls are only spaced by that setting and a limit is learned from 429s.
   */
  pollLimit: boolean;
  /** Requests need a credential: `run` refuses to start without an API key or a bearer token. */
  authRequired: boolean;
  /** Results carry the price per unit (`metrics.unit_price`), so the receipts log records it as billed. */
  priced: boolean;
}

export interface GpuCapability {
  name: string;
  memory_mb: number | null;
  uuid: string;
  compute_capability: string | null;
}

/** What inference computes on, as advertised: the runtime's own word (src/gpu/compute-verdict.ts). */
export type Platform = "CUDA" | "Vulkan" | "Metal" | "CPU";

export interface Capabilities {
  gpus: GpuCapability[];
  cuda: string | null;
  models: string[];
  platform: Platform;
  supported_tasks: ["inference"];
  max_concurrent_jobs: number;
  region?: string | undefined;
  price?: number | undefined;
}

/** A job as handed over by the coordinator. `payload` is untrusted: src/miner/screening.ts validates it. */
export interface Job {
  jobId: string;
  payload: unknown;
  constraints: unknown;
}

export interface JobMetrics {
  duration_ms: number;
  gpu_utilization: number | null;
  memory_used: number | null;
  memory_peak: number | null;
  units: number;
  unit_type: "tokens";
}

/** A computed result, dialect-neutral. This is what the outbox stores. */
export interface CompletedJob {
  jobId: string;
  output: string;
  model: string;
  promptTokens: number;
  completionTokens: number;
  executionTimeS: number;
  /** Unix milliseconds. */
  startedAt: number;
  /** Unix milliseconds. */
  completedAt: number;
  metrics: JobMetrics;
  /** The miner's signed receipt (docs/receipts.md). */
  receipt: Record<string, unknown>;
}

export interface SubmitAck {
  /** HTTP status of the accepting answer. */
  status: number;
  /** Raw JSON text of the coordinator-signed receipt when it sent one (verify it losslessly). */
  coordinatorReceiptText: string | null;
  /** What the result billed as sent (aitbc: GPU seconds x the unit price; claim: no price). */
  billed?: BilledUnits | undefined;
}

/** The units a result was sent with, and the price per unit asked (null: none sent). */
export interface BilledUnits {
  units: number;
  unitType: string;
  unitPrice: number | null;
}

export interface HeartbeatInfo {
  inflight: number;
  metadata: Record<string, unknown>;
}

export interface CoordinatorClient {
  readonly protocol: Protocol;
  /** The dialect's traits, from its row in the dialect table. */
  readonly traits: DialectTraits;
  health(): Promise<void>;
  register(capabilities: Capabilities, concurrency: number): Promise<void>;
  /** Throws CoordinatorError kind "not_found" when the coordinator forgot us (register again). */
  heartbeat(info: HeartbeatInfo): Promise<void>;
  /**
   * A job that is now ours, or null when none (or, claim dialect, someone else won the claim).
   * Throws UnusableJobError for a job handed over whose answer cannot be used (fail it back);
   * `signal` aborts the request at once (CoordinatorError kind "aborted").
   */
  poll(maxWaitSeconds: number, signal?: AbortSignal): Promise<Job | null>;
  /** Throws CoordinatorError kind "not_found"/"conflict" when the job is gone or already done. */
  submit(result: CompletedJob): Promise<SubmitAck>;
  fail(jobId: string, errorCode: string, errorMessage: string): Promise<void>;
  /**
   * The ids of the jobs the coordinator lists as RUNNING for this miner (aitbc: every page of
   * `POST /v1/miners/{miner_id}/jobs?job_status=RUNNING`), or null when it offers no such listing
   * (404/405, or an answer that is no listing or admits an error). Left out by a dialect that has
   * none (claim): the miner then recovers from its own state alone.
   */
  runningJobs?(signal?: AbortSignal): Promise<string[] | null>;
  /**
   * Of `jobIds` (jobs this miner holds), those the coordinator no longer runs for it: cancelled,
   * requeued, handed to another miner or finished. null when it cannot say (no such route, an
   * answer that is no listing). aitbc: one listing of its RUNNING jobs answers for all of them;
   * claim: each job's `GET /v1/jobs/{id}`. Left out by a dialect that has no way to ask.
   */
  jobsNoLongerOurs?(jobIds: readonly string[], signal?: AbortSignal): Promise<string[] | null>;
  /** Best effort within `timeoutMs` (shutdown has a budget). */
  deregister(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}
