// The miner's public API: the loop and the durable state it is built on. Code outside src/miner/
// should import from here rather than from the files behind it.

export { DurableStore } from "./durable-store.js";
export { ExitCode } from "./exit-codes.js";
export type { FailureCode } from "./failure-codes.js";
export { type ClaimedJob, ClaimJournal } from "./journal.js";
export {
  type CoordinatorReceiptCheck,
  DEFAULT_ABORT_GRACE_MS,
  DEFAULT_FLUSH_TIMEOUT_MS,
  Miner,
  type MinerDeps,
  type MinerExit,
  MinerFatalError,
  type MinerHealth,
  type MinerSettings,
  type ReceiptRecord,
  runShutdownBudgetMs,
  shutdownBudgetMs,
} from "./loop.js";
export { Outbox } from "./outbox.js";
export { hostPollLimit, type PollBudget, PollWindow } from "./poll-budget.js";
export { PollGrants } from "./poll-grants.js";
export { Reporter } from "./reporter.js";
export { AUTH_RETRY_MS, decide, type RetriedCall, type RetryRule, type RetryVerdict } from "./retry.js";
export { checkConstraints, type HostFacts, type JobLimits, validatePayload } from "./screening.js";
export { DEFAULT_MIN_FREE_BYTES, isStorageError, StateStorage, StateStorageError } from "./state-storage.js";
