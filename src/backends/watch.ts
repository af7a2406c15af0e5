// Periodic model rescan (docs/models.md: advertise only what can be served). New files, a file that
// finished copying, map edits and Ollama pulls show up in backend.listModels() after refresh();
// when that set of names changes, `onChange` runs (compose: the miner registers again). Rescans
// never overlap (a refresh can take long: downloads, preflights), and a failing one is logged once.
// Between rescans the list itself is looked at every second (in memory, no I/O): a model a job
// found deleted or truncated stops being advertised at once, not at the next rescan.
import type { Logger } from "../log.js";
import type { Backend } from "./types.js";

export interface ModelWatch {
  /** One rescan now (the timer calls this); resolves when it and its onChange are done. */
  tick(): Promise<void>;
  stop(): void;
}

export function watchModels(opts: {
  backend: Backend;
  log: Logger;
  intervalMs: number;
  /** How often listModels() is compared between rescans (default 1 s). */
  listCheckMs?: number;
  onChange: (models: string[]) => Promise<void>;
}): ModelWatch {
  const { backend, log } = opts;
  const names = () =>
    backend
      .listModels()
      .map((m) => m.name)
      .sort();
  let last = names().join("\n");
  let running: Promise<void> | null = null;
  let lastError: string | null = null;
  let stopped = false;

  async function rescan(): Promise<void> {
    try {
      await backend.refresh?.();
      lastError = null;
    } catch (err) {
      const msg = (err as Error).message;
      if (msg !== lastError)
        log.warn(
          { event: "models_rescan_failed", err: msg },
          "model rescan failed; the models found before are still offered",
        );
      lastError = msg;
    }
    await compare();
  }

  async function compare(): Promise<void> {
    const now = names();
    if (stopped || now.join("\n") === last) return;
    last = now.join("\n");
    log.info(
      { event: "models_changed", models: now },
      "the models this miner serves changed; registering again",
    );
    await opts.onChange(now).catch((err: unknown) => {
      log.warn({ event: "models_change_failed", err: (err as Error).message }, "could not register again");
    });
  }

  const tick = () => {
    running ??= rescan().finally(() => {
      running = null;
    });
    return running;
  };
  const timer = setInterval(() => void tick(), opts.intervalMs);
  timer.unref();
  // A rescan under way compares when it ends; otherwise a changed list is acted on now.
  const glance = setInterval(() => {
    if (running || names().join("\n") === last) return;
    running = compare().finally(() => {
      running = null;
    });
  }, opts.listCheckMs ?? 1000);
  glance.unref();
  return {
    tick,
    stop() {
      stopped = true;
      clearInterval(timer);
      clearInterval(glance);
    },
  };
}
