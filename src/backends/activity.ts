// What a backend is busy with that can take minutes (starting its runtime, preflighting a model,
// loading one) and its last sign of progress, so /healthz can tell a slow load from a stuck one.
// Each is logged when it starts, every few seconds while it runs, and when it ends.
import { type Clock, monotonicNow } from "../clock.js";
import type { Logger } from "../log.js";

export type ActivityKind = "runtime" | "preflight" | "load";

export interface BackendActivity {
  kind: ActivityKind;
  /** The model's name ("" for the runtime). */
  model: string;
  path: string | null;
  sizeBytes: number | null;
  /** Monotonic milliseconds. */
  startedAt: number;
  /** Monotonic milliseconds of the last sign of progress (its start, until one comes). */
  progressAt: number;
  /** How far along, 0..1, when the work says so. */
  fraction: number | null;
  /** The step it is in, when the work says so ("load", "evaluate", ...). */
  phase: string | null;
  /** Whether the work reports progress as it goes; when not, only its start says it moved. */
  reportsProgress: boolean;
}

export interface BackendProgress {
  /** What is under way now. */
  active: BackendActivity[];
  /** When any activity last started, progressed or ended (monotonic), or null if none ever did. */
  lastProgressAt: number | null;
}

export type ActivityOutcome = "ok" | "failed" | "timed_out";

export interface ActivityHandle {
  /** A sign of progress; `fraction` and `phase` when the work says how far it is. */
  progress(fraction?: number | null, phase?: string | null): void;
  /** Done; the last of several callers sharing one activity ends it. */
  end(outcome: ActivityOutcome, fields?: Record<string, unknown>): void;
}

export interface ActivityStart {
  model: string;
  path?: string | null | undefined;
  sizeBytes?: number | null | undefined;
  reportsProgress: boolean;
}

/** Progress lines at most this often per activity (and at least this often while it runs). */
export const PROGRESS_LOG_EVERY_MS = 5000;

const EVENTS: Record<ActivityKind, string> = {
  runtime: "runtime_start",
  preflight: "model_preflight",
  load: "model_load",
};

interface Entry {
  a: BackendActivity;
  refs: number;
  loggedAt: number;
}

export class ActivityBoard {
  readonly #active = new Set<Entry>();
  #lastProgressAt: number | null = null;
  #ticker: NodeJS.Timeout | null = null;

  constructor(
    private readonly log: Logger,
    private readonly clock: Clock = monotonicNow,
    private readonly logEveryMs = PROGRESS_LOG_EVERY_MS,
  ) {}

  snapshot(): BackendProgress {
    return { active: [...this.#active].map((e) => ({ ...e.a })), lastProgressAt: this.#lastProgressAt };
  }

  /** Start (or join: same kind and file) an activity. */
  start(kind: ActivityKind, s: ActivityStart): ActivityHandle {
    const path = s.path ?? null;
    let entry = [...this.#active].find(
      (e) => e.a.kind === kind && e.a.path === path && e.a.model === s.model,
    );
    const now = this.clock();
    if (entry) entry.refs++;
    else {
      entry = {
        a: {
          kind,
          model: s.model,
          path,
          sizeBytes: s.sizeBytes ?? null,
          startedAt: now,
          progressAt: now,
          fraction: null,
          phase: null,
          reportsProgress: s.reportsProgress,
        },
        refs: 1,
        loggedAt: now,
      };
      this.#active.add(entry);
      this.#lastProgressAt = now;
      this.log.info(
        { event: `${EVENTS[kind]}_started`, model: s.model || undefined, path, sizeBytes: entry.a.sizeBytes },
        `${EVENTS[kind].replace("_", " ")} started`,
      );
      this.#tick();
    }
    const e = entry;
    let ended = false;
    return {
      progress: (fraction = null, phase = null) => {
        if (ended) return;
        this.#moved(e);
        if (fraction !== null) e.a.fraction = Math.min(1, Math.max(0, fraction));
        if (phase !== null) e.a.phase = phase;
      },
      end: (outcome, fields = {}) => {
        if (ended) return;
        ended = true;
        if (--e.refs > 0) return;
        this.#active.delete(e);
        const t = this.#moved(e);
        const level = outcome === "ok" ? "info" : "warn";
        this.log[level](
          {
            event: `${EVENTS[kind]}_ended`,
            model: e.a.model || undefined,
            path: e.a.path,
            outcome,
            ms: Math.round(t - e.a.startedAt),
            ...fields,
          },
          `${EVENTS[kind].replace("_", " ")} ended: ${outcome}`,
        );
        this.#tick();
      },
    };
  }

  /**
   * `e` moved now. A preflight runs inside the load of the same file (the pool preflights first):
   * its progress is the load's too.
   */
  #moved(e: Entry): number {
    const t = this.clock();
    e.a.progressAt = t;
    this.#lastProgressAt = t;
    if (e.a.kind === "preflight")
      for (const o of this.#active) if (o.a.kind === "load" && o.a.path === e.a.path) o.a.progressAt = t;
    return t;
  }

  /** While anything runs, say every few seconds how far it is (or that it still runs). */
  #tick(): void {
    if (this.#active.size === 0) {
      if (this.#ticker) clearInterval(this.#ticker);
      this.#ticker = null;
      return;
    }
    if (this.#ticker) return;
    this.#ticker = setInterval(() => this.#logProgress(), Math.min(1000, this.logEveryMs));
    this.#ticker.unref();
  }

  #logProgress(): void {
    const now = this.clock();
    for (const e of this.#active) {
      if (now - e.loggedAt < this.logEveryMs) continue;
      e.loggedAt = now;
      const { kind, model, path, fraction, phase, startedAt, progressAt } = e.a;
      this.log.info(
        {
          event: `${EVENTS[kind]}_progress`,
          model: model || undefined,
          path,
          pct: fraction === null ? undefined : Math.floor(fraction * 100),
          phase: phase ?? undefined,
          elapsedMs: Math.round(now - startedAt),
          sinceProgressMs: e.a.reportsProgress ? Math.round(now - progressAt) : undefined,
        },
        `${EVENTS[kind].replace("_", " ")} under way`,
      );
    }
  }
}
