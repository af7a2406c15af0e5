// Exponential backoff with full jitter (AWS architecture blog), honouring a server's Retry-After.

export interface BackoffOptions {
  baseMs: number;
  capMs: number;
  random?: () => number;
}

/**
 * Every retry schedule in the program, in one table (first delay and cap, ms): what is retried
 * decides how patiently. Build one with `backoffFor`.
 */
export const BACKOFF = {
  /** Registering with the coordinator (src/miner/registration.ts). */
  register: { baseMs: 500, capMs: 30_000 },
  /** A failed poll (src/miner/poll-loop.ts). */
  poll: { baseMs: 500, capMs: 30_000 },
  /** Submitting a computed result: it is safe in the outbox, so the cap is long. */
  submit: { baseMs: 500, capMs: 60_000 },
  /** A heartbeat that failed: sent again sooner than the interval, never later. */
  heartbeat: { baseMs: 1000, capMs: 30_000 },
  /** Reporting a failure verdict: the slot stays taken at the coordinator until it lands. */
  fail: { baseMs: 250, capMs: 30_000 },
  /** Asking the coordinator which jobs it runs for us (src/miner/reconcile.ts). */
  reconcile: { baseMs: 500, capMs: 5000 },
  /** Restarting a worker process that died (src/fleet/supervisor.ts). */
  workerRestart: { baseMs: 1000, capMs: 60_000 },
} as const satisfies Record<string, BackoffOptions>;

export type BackoffFor = keyof typeof BACKOFF;

/** A fresh backoff on the table's schedule for `what`. */
export function backoffFor(what: BackoffFor, random?: () => number): Backoff {
  return new Backoff(random ? { ...BACKOFF[what], random } : BACKOFF[what]);
}

export class Backoff {
  private attempt = 0;
  private readonly random: () => number;

  constructor(private readonly opts: BackoffOptions) {
    this.random = opts.random ?? Math.random;
  }

  /** Delay before the next try: uniform in [0, min(cap, base·2^n)], but never below retryAfterMs. */
  next(retryAfterMs?: number | null): number {
    const ceiling = Math.min(this.opts.capMs, this.opts.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    const jittered = Math.floor(this.random() * ceiling);
    if (retryAfterMs !== undefined && retryAfterMs !== null && retryAfterMs > 0) {
      return Math.min(Math.max(jittered, retryAfterMs), Math.max(this.opts.capMs, retryAfterMs));
    }
    return jittered;
  }

  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}

/** Sleep that ends early (resolving false) when the signal fires. */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  // setTimeout fires at once for delays past 2^31-1 ms: never let a huge delay become a busy loop.
  ms = Math.min(Math.max(0, ms), 2 ** 31 - 1);
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      resolve(false);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Wait for `p` at most `ms`: true when it settled in time. Leaves no timer behind. */
export async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([
      p.then(
        () => true,
        () => true,
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
