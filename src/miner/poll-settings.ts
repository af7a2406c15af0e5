// How `run` spends the coordinator's poll budget, from its config: the published limit per
// window less the margin for arrival-time counting (hostPollLimit), idle polls spaced evenly over
// the window at IDLE_SHARE of it. A lone miner spends it itself; a fleet's supervisor spends it for the whole host.
// (docs/operations.md#the-hosts-poll-budget)
import type { RunConfig } from "../config.js";
import { ConfigError } from "../config-file.js";
import { dialectTraits } from "../coordinator/dialects.js";
import { hostPollLimit, type PollWindowSettings } from "./poll-budget.js";
import type { MinerSettings } from "./types.js";

/** The window `--polls-per-minute` is counted over; tests shorten it (AITBC_POLL_WINDOW_MS). */
export const POLL_WINDOW_ENV = "AITBC_POLL_WINDOW_MS";
const DEFAULT_WINDOW_MS = 60_000;
/**
 * The share of the budget idle polls spend; the rest is kept for the polls that follow a job (a
 * backlog may be queued). Idle polls at the full rate leave a window always full, so the polls
 * after a burst of jobs would wait seconds for old ones to leave it (measured on upstream: 7 s).
 */
export const IDLE_SHARE = 0.7;

export type PollSettings = Pick<
  MinerSettings,
  "pollsPerWindow" | "pollWindowMs" | "idlePollIntervalMs" | "longPollSeconds"
>;

/** The window length: 60 s, or AITBC_POLL_WINDOW_MS (a rehearsal against a reduced window). */
export function pollWindowMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[POLL_WINDOW_ENV];
  if (raw === undefined || raw === "") return DEFAULT_WINDOW_MS;
  // Plain decimal digits only, as every integer setting (not "1e4", "0x10" or " 5000").
  const ms = /^\d{1,7}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(ms >= 1000 && ms <= 3_600_000))
    throw new ConfigError(
      `${POLL_WINDOW_ENV} must be a whole number of milliseconds from 1000 to 3600000, not ${JSON.stringify(raw)}`,
    );
  return ms;
}

/** The poll settings of `run` (`pollMinIntervalMs`: tests and the demo, a coordinator without limits). */
export function pollSettings(
  cfg: Pick<RunConfig, "protocol" | "pollsPerMinute" | "longPoll">,
  overrides: { pollMinIntervalMs?: number; longPollSeconds?: number } = {},
  env: NodeJS.ProcessEnv = process.env,
): PollSettings {
  const traits = dialectTraits(cfg.protocol);
  // A dialect without long-poll asks for no wait: a coordinator that held its polls would still
  // find nothing to hold them for.
  const longPollSeconds = (s: number) => (traits.longPoll ? s : 0);
  if (overrides.pollMinIntervalMs !== undefined) {
    return {
      pollsPerWindow: Number.POSITIVE_INFINITY,
      pollWindowMs: DEFAULT_WINDOW_MS,
      idlePollIntervalMs: overrides.pollMinIntervalMs,
      longPollSeconds: longPollSeconds(overrides.longPollSeconds ?? 0),
    };
  }
  const windowMs = pollWindowMs(env);
  // A dialect with a published limit (aitbc) is held to it per window; one without (claim) has
  // none known (it is learned from 429s), and its polls are spaced by the same --polls-per-minute.
  const spend = hostPollLimit(cfg.pollsPerMinute);
  return {
    pollsPerWindow: traits.pollLimit ? spend : Number.POSITIVE_INFINITY,
    pollWindowMs: windowMs,
    idlePollIntervalMs: Math.ceil(windowMs / (spend * IDLE_SHARE)),
    longPollSeconds: longPollSeconds(cfg.longPoll),
  };
}

/** The budget's window settings from these poll settings. */
export function pollWindowSettings(p: PollSettings): PollWindowSettings {
  return { perWindow: p.pollsPerWindow, windowMs: p.pollWindowMs, spacingMs: p.idlePollIntervalMs };
}
