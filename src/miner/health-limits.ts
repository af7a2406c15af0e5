// How long each kind of work may go without progress before /healthz calls the miner stuck: each
// its own deadline (docs/operations.md#probes). The defaults suit real hosts; AITBC_HEALTH_LIMITS
// (seconds, e.g. "poll=120,preflight=300") lengthens them for slow disks or shortens them in tests.

export interface HealthLimits {
  /** How late the poll loop may be past the wait it planned (its next poll, a retry, a re-check). */
  pollStallMs: number;
  /** Warm-up between backend steps (admission, priming): no progress for this long is stuck. */
  warmUpStallMs: number;
  /** A preflight child whose lines and CPU/fault counters have not moved for this long is stuck. */
  preflightStallMs: number;
  /**
   * A step that reports no progress of its own (the runtime's start, an in-process load): this
   * long, plus `loadMsPerGiB` for each GiB of the model, from its start or its preflight's end.
   */
  loadStallMs: number;
  loadMsPerGiB: number;
  /** How long a job may outlive its deadline (the watchdog's abort grace is inside); null: abort grace + 5 s. */
  jobOverrunMs: number | null;
}

export const DEFAULT_HEALTH_LIMITS: HealthLimits = {
  pollStallMs: 120_000,
  warmUpStallMs: 120_000,
  preflightStallMs: 120_000,
  loadStallMs: 120_000,
  // A cold read at ~35 MB/s, as the preflight's own time limit assumes.
  loadMsPerGiB: 30_000,
  jobOverrunMs: null,
};

export const HEALTH_LIMITS_ENV = "AITBC_HEALTH_LIMITS";

const KEYS: Record<string, keyof HealthLimits> = {
  poll: "pollStallMs",
  "warm-up": "warmUpStallMs",
  preflight: "preflightStallMs",
  load: "loadStallMs",
  "load-per-gib": "loadMsPerGiB",
  job: "jobOverrunMs",
};

/** "poll=120,preflight=300" (seconds, decimals allowed) → limits; throws with the part it cannot read. */
export function parseHealthLimits(text: string): Partial<HealthLimits> {
  const out: Partial<HealthLimits> = {};
  for (const part of text.split(",").map((p) => p.trim())) {
    if (part === "") continue;
    const m = /^([a-z-]+)=(\d{1,7}(?:\.\d{1,3})?)$/.exec(part);
    const key = m ? KEYS[m[1]!] : undefined;
    if (!m || !key) {
      throw new Error(
        `${HEALTH_LIMITS_ENV}: cannot read ${JSON.stringify(part.slice(0, 40))}: use NAME=SECONDS, NAME one of ${Object.keys(KEYS).join(", ")}`,
      );
    }
    out[key] = Math.round(Number(m[2]) * 1000);
  }
  return out;
}

/** The limits in force: the settings', else the environment's, else the defaults. */
export function resolveHealthLimits(
  settings: Partial<HealthLimits> | undefined,
  env: NodeJS.ProcessEnv = process.env,
): HealthLimits {
  const fromEnv = env[HEALTH_LIMITS_ENV] ? parseHealthLimits(env[HEALTH_LIMITS_ENV]) : {};
  return { ...DEFAULT_HEALTH_LIMITS, ...fromEnv, ...settings };
}
