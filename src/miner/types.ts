// What the miner loop is made of and gives back: its settings, the dependencies injected by
// compose.ts, its figures, exit and health, and the stop budget the service manager must allow.
import type { Backend, InferenceRequest } from "../backends/types.js";
import type { Capabilities, CoordinatorClient } from "../coordinator/types.js";
import type { Logger } from "../log.js";
import type { MinerEvent } from "../ops/events.js";
import type { MinerReceiptInput } from "../receipts/receipt.js";
import type { HealthLimits } from "./health-limits.js";
import type { CancelCheckTiming } from "./job-cancel.js";
import type { ClaimJournal } from "./journal.js";
import type { Outbox } from "./outbox.js";
import type { PollBudget } from "./poll-budget.js";
import type { CoordinatorReceiptCheck, ReceiptRecord } from "./reporter.js";
import type { RetryRule } from "./retry.js";
import type { HostFacts, JobLimits } from "./screening.js";
import type { StateStorage } from "./state-storage.js";

export interface MinerSettings {
  minerId: string;
  concurrency: number;
  heartbeatIntervalMs: number;
  /**
   * The coordinator's poll budget: at most this many polls in any `pollWindowMs`, the margin for
   * arrival-time counting already taken off the published limit (Infinity: no known limit,
   * learned from 429s). Polls burst while they return jobs, within the budget; in a fleet the
   * supervisor's budget for the host is spent instead (MinerDeps.pollBudget).
   */
  pollsPerWindow: number;
  pollWindowMs: number;
  /** Least time between two idle polls (the budget spread evenly over its window). */
  idlePollIntervalMs: number;
  /** max_wait_seconds sent with each poll: a coordinator that holds polls answers when a job comes. */
  longPollSeconds: number;
  jobTimeoutMs: number;
  gracePeriodMs: number;
  /** How long a backend may take to honour an abort before it is declared wedged. */
  abortGraceMs: number;
  /** On shutdown, how long to keep trying to submit what is in the outbox. */
  flushTimeoutMs: number;
  limits: JobLimits;
  unloadAfterJob: boolean;
  /** How sparingly to ask whether long jobs were cancelled (default: job-cancel.ts). */
  cancelCheck?: Partial<CancelCheckTiming> | undefined;
  /** How long each kind of work may go without progress before /healthz fails (default: AITBC_HEALTH_LIMITS, else health-limits.ts). */
  health?: Partial<HealthLimits> | undefined;
}

/** What the miner's receipt is made from (the receipts module defines and signs it). */
export type ReceiptInput = MinerReceiptInput;

/** What VRAM admission may refuse a job with (src/gpu/policy.ts decides; the one definition). */
export type AdmissionCode = "gpu_unavailable" | "insufficient_vram";

/** Everything the loop needs from the rest of the program, injected so each piece stays replaceable. */
export interface MinerDeps {
  settings: MinerSettings;
  client: CoordinatorClient;
  backend: Backend;
  outbox: Outbox;
  journal: ClaimJournal;
  log: Logger;
  capabilities(): Promise<Capabilities>;
  hostFacts(): Promise<HostFacts>;
  heartbeatMetadata(): Promise<Record<string, unknown>>;
  signReceipt(input: ReceiptInput): Record<string, unknown>;
  checkCoordinatorReceipt(rawText: string): CoordinatorReceiptCheck;
  recordReceipt(entry: ReceiptRecord): Promise<void>;
  /** VRAM admission: why the job cannot run here (before any model is loaded), or null to go ahead. */
  admit?(req: InferenceRequest): Promise<{ errorCode: AdmissionCode; message: string } | null>;
  /** Around each job: e.g. check that VRAM came back. */
  jobMemoryProbe?(): Promise<() => Promise<void>>;
  /** GPU utilization/memory figures for a job's metrics. */
  jobMetrics?(): Promise<{ gpu_utilization: number | null; memory_used: number | null }>;
  /**
   * Start the inference runtime and load the models to serve, before the first job is taken (a
   * job right after a start is then as fast as the rest). Resolves with the models now warm.
   */
  warmUp?(signal: AbortSignal): Promise<string[]>;
  /** Ops events (jobs, deliveries, polls) for metrics. */
  onEvent?(e: MinerEvent): void;
  /** What a failed coordinator call means (default: `decide`, the one rule). */
  retryRule?: RetryRule;
  /** Whether the state directory takes writes (default: probed in the outbox's directory). */
  storage?: StateStorage;
  /** The poll budget (default: this process's own, from the settings; in a fleet the host's). */
  pollBudget?: PollBudget;
}

/** Time allowed to deregister at shutdown, and to release the backend after it. */
export const DEREGISTER_TIMEOUT_MS = 5000;
export const BACKEND_CLOSE_TIMEOUT_MS = 5000;
/** An aborted poll settles at once; this only bounds a dialect that ignores the abort. */
export const POLL_ABORT_WAIT_MS = 2000;
/** The least time between two heartbeats sent out of turn (after a failure, on a poll error). */
export const EARLY_BEAT_SPACING_MS = 1000;
/** How often to re-probe a state directory that could not be written. */
export const STORAGE_RECHECK_MS = 5000;
/** How often to look again when no model can be served (the rescan also wakes the loop). */
export const NO_MODEL_RECHECK_MS = 5000;

/** The abort grace and outbox flush `run` uses (tests and the demo shorten them). */
export const DEFAULT_ABORT_GRACE_MS = 10_000;
export const DEFAULT_FLUSH_TIMEOUT_MS = 10_000;

/** The longest a graceful stop of `run` can take with this grace period (seconds). */
export function runShutdownBudgetMs(gracePeriodS: number): number {
  return shutdownBudgetMs({
    gracePeriodMs: gracePeriodS * 1000,
    abortGraceMs: DEFAULT_ABORT_GRACE_MS,
    flushTimeoutMs: DEFAULT_FLUSH_TIMEOUT_MS,
  });
}

/**
 * The longest a graceful stop can take with these settings: the grace period, the abort grace for
 * jobs that outlive it, the outbox flush, deregistration and releasing the backend. A service
 * manager's stop timeout must cover it (see `service`).
 */
export function shutdownBudgetMs(
  s: Pick<MinerSettings, "gracePeriodMs" | "abortGraceMs" | "flushTimeoutMs">,
): number {
  return (
    POLL_ABORT_WAIT_MS +
    s.gracePeriodMs +
    s.abortGraceMs +
    1000 +
    s.flushTimeoutMs +
    DEREGISTER_TIMEOUT_MS +
    BACKEND_CLOSE_TIMEOUT_MS
  );
}

export interface MinerStats {
  completed: number;
  failuresByCode: Record<string, number>;
  promptTokens: number;
  busySeconds: number;
  failed: number;
  submitted: number;
  dropped: number;
  tokens: number;
  inflight: number;
  /** Results handed to the reporter and not yet acknowledged (in memory, not the outbox's log). */
  pendingSubmissions: number;
  /** Whether the state directory takes writes; false stops new jobs. */
  stateWritable: boolean;
}

export type MinerExit = { code: number; reason: string };

export class MinerFatalError extends Error {
  override readonly name = "MinerFatalError";
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

export type { MinerHealth } from "./health.js";
