// Sliding-window rate limits per (route, client) as on the real coordinator: N calls per window,
// counted by ARRIVAL (the time the call is handled here, not when the miner sent it); past that,
// 429 with the seconds until the oldest arrival leaves the window. A refused call is not counted.
// The client is the miner on the reference coordinator and the caller's IP in upstream mode
// (CoordinatorCore.limit), where every miner of one host shares the budget.

export interface RateLimits {
  register: number;
  heartbeat: number;
  poll: number;
  result: number;
  /** Window length (default 60 000 ms). */
  windowMs: number;
}

export const DEFAULT_RATE_LIMITS: RateLimits = {
  register: 50,
  heartbeat: 100,
  poll: 100,
  result: 50,
  windowMs: 60_000,
};

export class RateLimiter {
  private readonly hits = new Map<string, number[]>();

  constructor(
    private readonly limits: RateLimits,
    private readonly now: () => number,
  ) {}

  /** null when allowed (and counted), else the milliseconds to wait. */
  take(route: keyof Omit<RateLimits, "windowMs">, client: string): number | null {
    const limit = this.limits[route];
    if (!Number.isFinite(limit) || limit <= 0) return null;
    const key = `${route}\u0000${client}`;
    const t = this.now();
    const since = t - this.limits.windowMs;
    const list = (this.hits.get(key) ?? []).filter((at) => at > since);
    if (list.length >= limit) {
      this.hits.set(key, list);
      return Math.max(1, (list[0] ?? t) + this.limits.windowMs - t);
    }
    list.push(t);
    this.hits.set(key, list);
    return null;
  }
}
