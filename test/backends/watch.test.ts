// The periodic model rescan: a change in backend.listModels() re-registers the miner; rescans do
// not overlap; a failing rescan is logged once. End to end: a miner started on an empty models
// directory registers the model file added later, within the rescan period.
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Backend, ModelInfo } from "../../src/backends/types.js";
import { watchModels } from "../../src/backends/watch.js";
import { createLogger } from "../../src/log.js";
import { tempDir, tinyPath } from "../support/backends.js";
import { coordinatorWithReceipts, fastOverrides, minerConfig, startMiner } from "../support/harness.js";

function fakeBackend() {
  const state = { models: [] as string[], refreshes: 0, fail: null as string | null, refreshMs: 0 };
  const backend = {
    name: "llama",
    listModels: (): ModelInfo[] => state.models.map((name) => ({ name, sizeBytes: null, source: "" })),
    async refresh() {
      state.refreshes++;
      await new Promise((r) => setTimeout(r, state.refreshMs));
      if (state.fail) throw new Error(state.fail);
    },
  } as unknown as Backend;
  return { backend, state };
}

function capture() {
  const lines: { event?: string }[] = [];
  const destination = {
    write(chunk: string) {
      for (const l of chunk.split("\n").filter(Boolean)) lines.push(JSON.parse(l));
      return true;
    },
  } as unknown as NodeJS.WritableStream;
  return { log: createLogger({ level: "info", destination }), lines };
}

describe("model watch", () => {
  it("calls onChange only when the set of names changes", async () => {
    const { backend, state } = fakeBackend();
    const { log, lines } = capture();
    const changes: string[][] = [];
    const watch = watchModels({
      backend,
      log,
      intervalMs: 60_000,
      onChange: async (m) => void changes.push(m),
    });
    try {
      await watch.tick();
      expect(changes).toEqual([]);
      state.models = ["tiny", "b"];
      await watch.tick();
      await watch.tick();
      expect(changes).toEqual([["b", "tiny"]]);
      state.models = [];
      await watch.tick();
      expect(changes).toEqual([["b", "tiny"], []]);
      expect(lines.filter((l) => l.event === "models_changed")).toHaveLength(2);
    } finally {
      watch.stop();
    }
  });

  it("never runs two rescans at once, and logs a failing rescan once", async () => {
    const { backend, state } = fakeBackend();
    const { log, lines } = capture();
    const watch = watchModels({ backend, log, intervalMs: 60_000, onChange: async () => undefined });
    try {
      state.refreshMs = 50;
      await Promise.all([watch.tick(), watch.tick(), watch.tick()]);
      expect(state.refreshes).toBe(1);
      state.fail = "models directory /x: ENOENT";
      await watch.tick();
      await watch.tick();
      expect(lines.filter((l) => l.event === "models_rescan_failed")).toHaveLength(1);
    } finally {
      watch.stop();
    }
  });

  it("runs on its timer", async () => {
    const { backend, state } = fakeBackend();
    const { log } = capture();
    let seen: string[] | null = null;
    const watch = watchModels({
      backend,
      log,
      intervalMs: 20,
      onChange: async (m) => {
        seen = m;
      },
    });
    try {
      state.models = ["tiny"];
      const end = Date.now() + 5000;
      while (seen === null && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      expect(seen).toEqual(["tiny"]);
    } finally {
      watch.stop();
    }
  });
});

describe("miner on an empty models directory", () => {
  it("registers no model, then registers the complete file added later, never the truncated one", async () => {
    const dir = tempDir("models-empty-");
    const { coordinator } = await coordinatorWithReceipts();
    const miner = await startMiner(minerConfig(coordinator.url, { models: dir }), undefined, {
      ...fastOverrides,
      modelRefreshMs: 200,
    });
    try {
      expect(miner.backend.listModels()).toEqual([]);
      const caps = () =>
        (coordinator.miners()[0]?.capabilities as { models?: string[] } | undefined)?.models ?? null;
      await coordinator.waitFor(() => caps() !== null, 60_000);
      expect(caps()).toEqual([]);
      const bytes = readFileSync(tinyPath);
      writeFileSync(join(dir, "partial.gguf"), bytes.subarray(0, bytes.length >> 1));
      copyFileSync(tinyPath, join(dir, "tiny.gguf"));
      // The rescan runs every 200 ms; the deadline is generous for a busy 2-core host.
      await coordinator.waitFor(() => (caps() ?? []).includes("tiny"), 60_000);
      expect(caps()).toEqual(["tiny"]);
      expect(miner.backend.hasModel("partial")).toBe(false);
    } finally {
      expect((await miner.stop()).code).toBe(0);
      await coordinator.close();
    }
  });
});
