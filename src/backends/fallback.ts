// Primary + secondary backend (DESIGN §5: Ollama serves a job "when its model is only available
// there"). A job goes to the primary when it has the model, else to the secondary; never to a
// backend that lacks the model. The secondary is optional at start-up: if it cannot be reached,
// the miner runs on the primary alone and a later refresh may bring it in.
import type { Logger } from "../log.js";
import { type Backend, BackendError, type ModelInfo } from "./types.js";

export function createFallbackBackend(primary: Backend, secondary: Backend, log: Logger): Backend {
  let secondaryUp = false;
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
    listModels(): ModelInfo[] {
      const mine = primary.listModels();
      const names = new Set(mine.map((m) => m.name));
      const extra = secondaryUp ? secondary.listModels().filter((m) => !names.has(m.name)) : [];
      return [...mine, ...extra];
    },
    hasModel(name) {
      return primary.hasModel(name) || (secondaryUp && secondary.hasModel(name));
    },
    async generate(req, signal) {
      if (primary.hasModel(req.model)) return primary.generate(req, signal);
      if (secondary.hasModel(req.model)) return secondary.generate(req, signal);
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
