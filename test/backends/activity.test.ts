// What a backend reports about long work for /healthz and the logs: start, progress at most every
// few seconds, end; callers of one load share it; a preflight inside a load moves the load too.
// The preflight child's line format, and the kernel counters that say a child is working.
import { describe, expect, it } from "vitest";
import { ActivityBoard } from "../../src/backends/activity.js";
import { OK_LINE, parseProgressLine, progressLine } from "../../src/backends/llama/preflight-protocol.js";
import { workDone } from "../../src/backends/llama/proc-progress.js";
import { createLogger } from "../../src/log.js";

function board(logEveryMs = 5000) {
  const lines: Record<string, unknown>[] = [];
  const destination = {
    write(chunk: string) {
      for (const l of chunk.split("\n").filter(Boolean)) lines.push(JSON.parse(l));
      return true;
    },
  } as unknown as NodeJS.WritableStream;
  let now = 1000;
  const b = new ActivityBoard(createLogger({ level: "info", destination }), () => now, logEveryMs);
  return { b, lines, at: (t: number) => (now = t), events: () => lines.map((l) => l["event"]) };
}

describe("activity board", () => {
  it("logs start and end, keeps the last progress, and forgets what ended", () => {
    const { b, at, events, lines } = board();
    const run = b.start("preflight", {
      model: "big",
      path: "/m/big.gguf",
      sizeBytes: 5,
      reportsProgress: true,
    });
    at(1500);
    run.progress(0.25, "load");
    expect(b.snapshot()).toEqual({
      active: [
        expect.objectContaining({
          kind: "preflight",
          model: "big",
          startedAt: 1000,
          progressAt: 1500,
          fraction: 0.25,
          phase: "load",
        }),
      ],
      lastProgressAt: 1500,
    });
    at(4000);
    run.end("ok");
    run.end("failed"); // a second end is ignored
    expect(b.snapshot()).toEqual({ active: [], lastProgressAt: 4000 });
    expect(events()).toEqual(["model_preflight_started", "model_preflight_ended"]);
    expect(lines[1]).toMatchObject({ model: "big", outcome: "ok", ms: 3000 });
  });

  it("callers of one load share it: it ends with the last", () => {
    const { b, events } = board();
    const a = b.start("load", { model: "m", path: "/m/m.gguf", reportsProgress: false });
    const c = b.start("load", { model: "m", path: "/m/m.gguf", reportsProgress: false });
    expect(b.snapshot().active).toHaveLength(1);
    a.end("ok");
    expect(b.snapshot().active).toHaveLength(1);
    c.end("ok");
    expect(b.snapshot().active).toHaveLength(0);
    expect(events()).toEqual(["model_load_started", "model_load_ended"]);
  });

  it("a preflight's progress and end are progress of the load of the same file", () => {
    const { b, at } = board();
    b.start("load", { model: "m", path: "/m/m.gguf", reportsProgress: false });
    const pre = b.start("preflight", { model: "m", path: "/m/m.gguf", reportsProgress: true });
    at(60_000);
    pre.progress();
    const load = () => b.snapshot().active.find((a) => a.kind === "load")!;
    expect(load().progressAt).toBe(60_000);
    at(90_000);
    pre.end("ok");
    expect(load().progressAt).toBe(90_000);
  });

  it("says every few seconds how far a running activity is, and no more often", async () => {
    const { b, lines, at } = board(20);
    const run = b.start("preflight", { model: "big", path: "/m/big.gguf", reportsProgress: true });
    run.progress(0.5, "evaluate");
    at(1000 + 20);
    await new Promise((r) => setTimeout(r, 60)); // the ticker runs every min(1 s, 20 ms)
    const progress = lines.filter((l) => l["event"] === "model_preflight_progress");
    expect(progress).toHaveLength(1); // the clock moved 20 ms once: one line
    expect(progress[0]).toMatchObject({ pct: 50, phase: "evaluate", elapsedMs: 20, sinceProgressMs: 20 });
    run.end("ok");
  });
});

describe("preflight child's lines", () => {
  it("round-trip steps, ignore anything else", () => {
    expect(parseProgressLine(progressLine("load", 0.42).trim())).toEqual({ phase: "load", fraction: 0.42 });
    expect(parseProgressLine(progressLine("evaluate").trim())).toEqual({ phase: "evaluate", fraction: null });
    expect(parseProgressLine('{"phase":"load","progress":7}')).toEqual({ phase: "load", fraction: 1 });
    expect(parseProgressLine(OK_LINE.trim())).toBeNull();
    expect(parseProgressLine("llama.cpp says hello")).toBeNull();
  });

  it("a process's work counters read from /proc move while it computes", () => {
    const before = workDone(process.pid);
    expect(before).not.toBeNull();
    const t0 = performance.now();
    let x = 0;
    while (workDone(process.pid) === before && performance.now() - t0 < 60_000) x += Math.sqrt(x + 1);
    expect(workDone(process.pid)).not.toBe(before);
    expect(workDone(2 ** 22 + 12345)).toBeNull(); // no such process
  });
});
