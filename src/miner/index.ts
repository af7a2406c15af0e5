// What code outside the TypeScript build reaches into the miner for: the benchmarks load it from
// dist/ (bench/lib.mjs), the deployment contract test the stop budget. Modules in src/ import the
// file they need directly; add an export here only for such an outside user.

export { DurableStore } from "./durable-store.js";
export { ClaimJournal } from "./journal.js";
export { Miner } from "./loop.js";
export { Outbox } from "./outbox.js";
export { DEFAULT_MIN_FREE_BYTES, StateStorage } from "./state-storage.js";
export { runShutdownBudgetMs } from "./types.js";
