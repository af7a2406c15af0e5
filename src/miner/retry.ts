// The one retry rule for every call the miner repeats (registration, heartbeats, polling,
// submitting a result, reporting a failure): what a failure means is decided here, from the
// error's kind and the call, and the loops only act on the verdict. How long to wait comes from
// the call's backoff (src/backoff.ts, one table). Swappable (MinerDeps.retryRule), like undici's
// retry handler.
import type { Backoff } from "../backoff.js";
import { CoordinatorError } from "../coordinator/errors.js";
import { envOf, RUN_SETTINGS } from "../settings.js";
import { ExitCode } from "./exit-codes.js";

export type RetriedCall = "register" | "heartbeat" | "poll" | "submit" | "fail";

export type RetryVerdict =
  /**
   * Try the same call again after `afterMs` (backoff with full jitter, Retry-After honoured).
   * `checkMembership`: the answer may mean the coordinator forgot this miner (upstream answers a
   * forgotten miner's poll with 500, not 404): a heartbeat out of turn tells (its 404 is `gone`).
   */
  | { kind: "retry"; afterMs: number; checkMembership?: true }
  /** The coordinator no longer has the job (404) or already has its verdict (409), or a heartbeat's 404: it forgot this miner. */
  | { kind: "gone"; alreadyDone: boolean }
  /** A 4xx that retrying cannot fix: this request is wrong for the coordinator. */
  | { kind: "rejected"; status: number | null }
  /** The miner cannot go on: stop with this exit code and tell the operator why. */
  | { kind: "fatal"; exitCode: ExitCode; message: string };

export type RetryRule = (err: unknown, call: RetriedCall, backoff: Backoff) => RetryVerdict;

/** Credentials refused while a result or verdict is owed: keep it, try again this often. */
export const AUTH_RETRY_MS = 60_000;

export const decide: RetryRule = (err, call, backoff) => {
  const e = err instanceof CoordinatorError ? err : null;
  const retry = (): RetryVerdict & { kind: "retry" } => ({
    kind: "retry",
    afterMs: backoff.next(e?.retryAfterMs ?? null),
  });
  if (e?.kind === "auth") {
    // Without credentials nothing new can be taken on: stop with advice. What is already owed
    // (results, failure verdicts) stays on disk and is retried until the key is fixed.
    if (call === "register" || call === "poll") {
      return {
        kind: "fatal",
        exitCode: ExitCode.badSettings,
        message: `the coordinator refused our credentials (HTTP ${e.status}) ${call === "poll" ? "while polling" : "at registration"}: check ${RUN_SETTINGS.apiKeyFile.flag} / ${envOf("apiKey")} and ${RUN_SETTINGS.minerId.flag}`,
      };
    }
    return { kind: "retry", afterMs: AUTH_RETRY_MS };
  }
  const gone = e?.kind === "not_found" || e?.kind === "conflict";
  const rejected = e?.kind === "client" && !e.retryable;
  switch (call) {
    case "register":
      if (rejected) {
        return {
          kind: "fatal",
          exitCode: ExitCode.badSettings,
          message: `the coordinator rejected registration (HTTP ${e.status}): ${e.message}`,
        };
      }
      return retry();
    case "heartbeat":
    case "poll":
      // 404: the coordinator forgot this miner (register again); anything else passes.
      if (e?.kind === "not_found") return { kind: "gone", alreadyDone: false };
      return call === "poll" && e?.kind === "server" ? { ...retry(), checkMembership: true } : retry();
    case "submit":
    case "fail":
      if (gone) return { kind: "gone", alreadyDone: e.kind === "conflict" };
      if (rejected) return { kind: "rejected", status: e.status };
      return retry();
  }
};
