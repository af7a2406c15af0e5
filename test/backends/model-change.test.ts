// A model file rewritten, truncated, deleted or replaced under a serving llama backend (issue 18,
// item 4): the process survives (weights are read, not mapped: a mapped file truncated under a
// job faults it with SIGBUS), the next job runs on the new file or fails with a reason, and
// listModels() follows. Real node-llama-cpp on tiny models, one thread; outputs are compared with
// a reference backend's, never with fixed text.
import { existsSync, readFileSync, renameSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import { beforeAll, describe, expect, it } from "vitest";
import { createLlamaBackend, type LlamaBackend } from "../../src/backends/llama/index.js";
import { encodeTinyGguf, writeTinyGguf } from "../../src/backends/tiny-gguf.js";
import { type Backend, BackendError } from "../../src/backends/types.js";
import { watchModels } from "../../src/backends/watch.js";
import { createLogger, silentLogger } from "../../src/log.js";
import { never, req, tempDir } from "../support/backends.js";

/** Two models of the same size and name, other weights; a long context for jobs that take a while. */
const A = { name: "tiny", seed: 101, ctx: 8192 };
const B = { name: "tiny", seed: 202, ctx: 8192 };
const SHORT = req({ maxTokens: 16 });
/** Thousands of tokens on one thread: seconds, long enough to change the file under it. */
const LONG = req({ maxTokens: 2000, prompt: "Once upon a time" });

async function until(cond: () => boolean, what: string, deadlineMs = 120_000): Promise<void> {
  const end = performance.now() + deadlineMs;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`still waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function failure(p: Promise<unknown>): Promise<BackendError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(BackendError);
    return err as BackendError;
  }
  throw new Error("the job succeeded");
}

/** Whether this process maps `path` (Linux): a mapped model is what a truncation faults. */
const mapped = (path: string) =>
  existsSync("/proc/self/maps") && readFileSync("/proc/self/maps", "utf8").includes(path);

interface Served {
  backend: LlamaBackend;
  path: string;
  dir: string;
  events: () => { event?: string; reason?: string; path?: string; msg?: string }[];
  names: () => string[];
  close: () => Promise<void>;
}

/** A backend serving DIR/tiny.gguf written with `opts`, preflight on (as `run` has it). */
async function serve(opts: typeof A): Promise<Served> {
  const dir = tempDir("model-change-");
  const path = join(dir, "tiny.gguf");
  writeTinyGguf(path, opts);
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).split("\n").filter(Boolean));
      cb();
    },
  });
  const backend = createLlamaBackend({
    modelsDir: dir,
    threads: 1,
    concurrency: 2,
    gpu: false,
    log: createLogger({ level: "info", destination: sink }),
    contextSize: 8192,
  });
  await backend.init();
  return {
    backend,
    path,
    dir,
    events: () => lines.map((l) => JSON.parse(l) as ReturnType<Served["events"]>[number]),
    names: () => backend.listModels().map((m) => m.name),
    close: () => backend.close(),
  };
}

describe("a model file changed under a serving backend", () => {
  const ref: Record<"a" | "b", string> = { a: "", b: "" };
  beforeAll(async () => {
    // What each file's weights answer, from a backend that never sees a file change.
    const dir = tempDir("model-change-ref-");
    writeTinyGguf(join(dir, "a.gguf"), { ...A, name: "a" });
    writeTinyGguf(join(dir, "b.gguf"), { ...B, name: "b" });
    const backend = createLlamaBackend({
      modelsDir: dir,
      threads: 1,
      concurrency: 1,
      gpu: false,
      log: silentLogger(),
      contextSize: 256,
      preflight: false,
    });
    await backend.init();
    try {
      ref.a = (await backend.generate({ ...SHORT, model: "a" }, never())).output;
      ref.b = (await backend.generate({ ...SHORT, model: "b" }, never())).output;
    } finally {
      await backend.close();
    }
    expect(ref.a).not.toBe(ref.b);
  });

  it("overwritten in place with other bytes while a job generates: that job finishes, the next runs on the new file", async () => {
    const s = await serve(A);
    try {
      expect((await s.backend.generate(SHORT, never())).output).toBe(ref.a);
      expect(mapped(s.path)).toBe(false); // read into memory, not mapped
      const { ino, size } = statSync(s.path);
      let settled = false;
      const long = s.backend.generate(LONG, never()).finally(() => {
        settled = true;
      });
      await new Promise((r) => setTimeout(r, 50)); // let it start generating
      writeFileSync(s.path, encodeTinyGguf(B)); // O_TRUNC, then the new bytes: same inode, same size
      expect(settled).toBe(false);
      expect(statSync(s.path)).toMatchObject({ ino, size });
      const done = await long;
      expect(done).toMatchObject({ completionTokens: LONG.maxTokens, stopReason: "maxTokens" });
      expect((await s.backend.generate(SHORT, never())).output).toBe(ref.b);
      expect(s.names()).toEqual(["tiny"]);
      const events = s.events().map((e) => e.event);
      expect(events.filter((e) => e === "model_file_changed")).toHaveLength(1);
      expect(events).toContain("model_retired");
      expect(events.filter((e) => e === "model_loaded")).toHaveLength(2);
      expect(events.filter((e) => e === "model_preflight_started")).toHaveLength(2); // the new file too
    } finally {
      await s.close();
    }
  });

  it("truncated while a job generates: that job finishes, the next fails with the scan's reason, the model is no longer listed", async () => {
    const s = await serve(A);
    try {
      await s.backend.warm!(["tiny"], never());
      let settled = false;
      const long = s.backend.generate(LONG, never()).finally(() => {
        settled = true;
      });
      await new Promise((r) => setTimeout(r, 50)); // let it start generating
      truncateSync(s.path, Math.floor(statSync(s.path).size / 2));
      expect(settled).toBe(false);
      expect(await long).toMatchObject({ completionTokens: LONG.maxTokens, stopReason: "maxTokens" });
      const err = await failure(s.backend.generate(SHORT, never()));
      expect(err.code).toBe("model_not_found");
      expect(err.message).toMatch(/is not offered: .*tiny\.gguf: truncated: /);
      expect(s.names()).toEqual([]);
      expect(s.backend.isLoaded!("tiny")).toBe(false);
      const skipped = s.events().filter((e) => e.event === "model_skipped");
      expect(skipped).toHaveLength(1);
      expect(skipped[0]!.reason).toMatch(/^truncated: /);
      // Completed again by a rename: offered and served again, from the new file.
      writeTinyGguf(join(s.dir, ".tiny.gguf.tmp"), B);
      renameSync(join(s.dir, ".tiny.gguf.tmp"), s.path);
      await s.backend.refresh();
      expect(s.names()).toEqual(["tiny"]);
      expect((await s.backend.generate(SHORT, never())).output).toBe(ref.b);
    } finally {
      await s.close();
    }
  });

  it("deleted: dropped, no longer listed, logged once; its jobs fail saying so", async () => {
    const s = await serve(A);
    try {
      expect((await s.backend.generate(SHORT, never())).output).toBe(ref.a);
      rmSync(s.path);
      for (let i = 0; i < 2; i++) {
        const err = await failure(s.backend.generate(SHORT, never()));
        expect(err.code).toBe("model_not_found");
        expect(err.message).toContain(`its file ${s.path} was deleted`);
      }
      await s.backend.refresh();
      expect(s.names()).toEqual([]);
      expect(s.backend.isLoaded!("tiny")).toBe(false);
      const events = s.events().map((e) => e.event);
      expect(events.filter((e) => e === "model_removed")).toHaveLength(1);
      expect(events).toContain("model_unloaded");
    } finally {
      await s.close();
    }
  });

  it("replaced by a rename, as docs/models.md says: the next job runs on the new file after its preflight", async () => {
    const s = await serve(A);
    try {
      expect((await s.backend.generate(SHORT, never())).output).toBe(ref.a);
      const tmp = join(s.dir, ".tiny.gguf.tmp");
      writeTinyGguf(tmp, B);
      expect(s.names()).toEqual(["tiny"]); // the file being written is not offered
      await s.backend.refresh();
      expect(s.names()).toEqual(["tiny"]);
      renameSync(tmp, s.path);
      expect((await s.backend.generate(SHORT, never())).output).toBe(ref.b);
      const events = s.events().map((e) => e.event);
      expect(events.filter((e) => e === "model_preflight_started")).toHaveLength(2);
      expect(events.filter((e) => e === "model_unloaded")).toHaveLength(1); // the old one, idle
    } finally {
      await s.close();
    }
  });

  it("the periodic refresh notices without a job: a replaced model is loaded again from the new file, a truncated one dropped", async () => {
    const s = await serve(A);
    try {
      await s.backend.warm!(["tiny"], never());
      const tmp = join(s.dir, ".tiny.gguf.tmp");
      writeTinyGguf(tmp, B);
      renameSync(tmp, s.path);
      await s.backend.refresh();
      expect(s.backend.isLoaded!("tiny")).toBe(true); // loaded again, before any job
      const loads = () => s.events().filter((e) => e.event === "model_loaded").length;
      expect(loads()).toBe(2);
      expect((await s.backend.generate(SHORT, never())).output).toBe(ref.b);
      expect(loads()).toBe(2);
      truncateSync(s.path, 1000);
      await s.backend.refresh();
      expect(s.names()).toEqual([]);
      expect(s.backend.isLoaded!("tiny")).toBe(false);
      expect(s.events().filter((e) => e.event === "model_skipped")[0]?.reason).toMatch(/^truncated: /);
    } finally {
      await s.close();
    }
  });
});

describe("model watch between rescans", () => {
  it("re-registers as soon as listModels() changes (a job found its file gone), without waiting for the rescan", async () => {
    let models = ["tiny"];
    let refreshes = 0;
    const backend = {
      name: "llama",
      listModels: () => models.map((name) => ({ name, sizeBytes: null, source: "" })),
      async refresh() {
        refreshes++;
      },
    } as unknown as Backend;
    const changes: string[][] = [];
    const watch = watchModels({
      backend,
      log: silentLogger(),
      intervalMs: 3_600_000,
      listCheckMs: 20,
      onChange: async (m) => void changes.push(m),
    });
    try {
      models = [];
      await until(() => changes.length > 0, "onChange");
      expect(changes).toEqual([[]]);
      expect(refreshes).toBe(0);
      await watch.tick(); // the rescan sees nothing new
      expect(changes).toEqual([[]]);
    } finally {
      watch.stop();
    }
  });
});
