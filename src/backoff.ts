// Exponential backoff with full jitter (AWS architecture blog), honouring a server's Retry-After.

export interface BackoffOptions {
  baseMs: number;
  capMs: number;
  random?: () => number;
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
