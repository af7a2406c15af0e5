// A miner CLI's log events and its /healthz and /readyz, read from outside as an orchestrator
// would: for the probe and wall-clock suites. Waits have generous deadlines; nothing is timed.
import type { Spawned } from "./cli.js";

export interface LogEvent {
  event?: string;
  /** ISO 8601 (the miner's pino timestamp). */
  time?: string;
  [k: string]: unknown;
}

export function events(m: Spawned): LogEvent[] {
  return m
    .stderr()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as LogEvent);
}

export const named = (m: Spawned, event: string) => events(m).filter((e) => e.event === event);

/** Wait until `cond` holds (checked every 50 ms), at most `ms`; on time-out say what the miner did. */
export async function until<T>(
  what: string,
  cond: () => T | null | undefined | false | Promise<T | null | undefined | false>,
  m: Spawned,
  ms = 120_000,
): Promise<T> {
  const end = performance.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (performance.now() > end) {
      const seen = events(m)
        .map((e) => e.event)
        .slice(-40)
        .join(",");
      throw new Error(`timed out waiting for ${what}; miner events: ${seen}\n${m.stderr().slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The ops server's base URL, once the miner has logged it. */
export function opsUrl(m: Spawned): Promise<string> {
  return until("the ops server", () => named(m, "ops_server")[0]?.["url"] as string | undefined, m);
}

export interface ProbeSample {
  path: string;
  status: number;
  reasons: string[];
  /** The miner's log events seen before the request went out, and once its answer was read. */
  before: Set<string>;
  after: Set<string>;
}

export async function probe(base: string, path: string, m: Spawned): Promise<ProbeSample> {
  const before = seenEvents(m);
  const r = await fetch(`${base}${path}`);
  const body = (await r.json()) as { reasons?: string[] };
  return { path, status: r.status, reasons: body.reasons ?? [], before, after: seenEvents(m) };
}

function seenEvents(m: Spawned): Set<string> {
  return new Set(events(m).map((e) => e.event ?? ""));
}

/** Ask /healthz and /readyz every `everyMs` until stopped; every answer is kept. */
export function sampleProbes(base: string, m: Spawned, everyMs = 200) {
  const samples: ProbeSample[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      for (const path of ["/healthz", "/readyz"]) samples.push(await probe(base, path, m));
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    samples,
    async stop() {
      stopped = true;
      await loop;
      return samples;
    },
  };
}
