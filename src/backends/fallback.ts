// Primary + secondary backend (docs/models.md: Ollama serves a job "when its model is only available
// there"). A job goes to a backend that has its exact name (the primary first), else to one that
// serves it by a tag fallback (the primary first); never to a backend that lacks the model. The
// secondary is optional at start-up: if it cannot be reached, the miner runs on the primary alone
// and a later refresh may bring it in.
import type { Logger } from "../log.js";
import { type Backend, BackendError, type ModelInfo } from "./types.js";

/** Served under exactly this name (a backend without hasExactModel has only exact names). */
function exact(b: Backend, name: string): boolean {
  return b.hasExactModel ? b.hasExactModel(name) : b.hasModel(name);
}

export function createFallbackBackend(primary: Backend, secondary: Backend, log: Logger): Backend {
  let secondaryUp = false;
  // An exact name in either backend wins over a tag fallback in either: if Ollama has exactly
  // "llama3:70b", it serves that rather than the llama backend's lone llama3.gguf.
  const pick = (name: string): Backend | undefined =>
    [primary, secondary].find((b) => exact(b, name)) ?? [primary, secondary].find((b) => b.hasModel(name));

  return {
    name: primary.name,
    async init() {
      await primary.init();
      try {
        await secondary.init();
        secondaryUp = true;
      } catch (err) {
        log.warn(
          { event: "fallback_unavailable", backend: secondary.name, err: (err as Error).message },
          `fallback backend ${secondary.name} is not available; serving ${primary.name} models only`,
        );
      }
    },
    // What the in-process runtime computes on decides what the miner advertises.
    ...(primary.compute ? { compute: () => primary.compute!() } : {}),
    // The in-process backend's preflights and loads are what /healthz watches.
    ...(primary.progress ? { progress: () => primary.progress!() } : {}),
    async warm(names, signal) {
      // Only the in-process backend has anything to warm; Ollama keeps its own models loaded.
      return primary.warm
        ? primary.warm(
            names.filter((n) => primary.hasModel(n)),
            signal,
          )
        : [];
    },
    listModels(): ModelInfo[] {
      const mine = primary.listModels();
      const names = new Set(mine.map((m) => m.name));
      const extra = secondaryUp ? secondary.listModels().filter((m) => !names.has(m.name)) : [];
      return [...mine, ...extra];
    },
    hasModel(name) {
      return primary.hasModel(name) || (secondaryUp && secondary.hasModel(name));
    },
    hasExactModel(name) {
      return exact(primary, name) || (secondaryUp && exact(secondary, name));
    },
    async refresh() {
      // A failing primary rescan (models directory gone) must not stop the secondary's.
      const primaryErr = await primary.refresh?.().then(
        () => null,
        (err: unknown) => err,
      );
      if (!secondaryUp) {
        try {
          await secondary.init();
          secondaryUp = true;
          log.info(
            { event: "fallback_available", backend: secondary.name },
            `fallback backend ${secondary.name} is up`,
          );
        } catch {
          // still down: tried again on the next refresh
        }
      } else {
        await secondary.refresh?.().catch(() => undefined);
      }
      if (primaryErr) throw primaryErr;
    },
    isLoaded(name) {
      return pick(name)?.isLoaded?.(name) ?? false;
    },
    async generate(req, signal) {
      const chosen = pick(req.model);
      if (chosen) return chosen.generate(req, signal);
      throw new BackendError("model_not_found", `model ${JSON.stringify(req.model)} is not available here`);
    },
    async unloadAll() {
      await Promise.all([primary.unloadAll(), secondary.unloadAll()]);
    },
    async close() {
      await Promise.allSettled([primary.close(), secondary.close()]);
    },
  };
}
