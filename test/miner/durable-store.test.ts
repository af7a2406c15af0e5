// The record log behind the outbox and the claim journal: group commit, replay, damage, upgrade
// from one file per record, compaction.
import {
  appendFileSync,
  promises as fsp,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { CORRUPT_NAME, DurableStore, LOG_NAME } from "../../src/miner/durable-store.js";
import { encodeRecord } from "../../src/miner/record-log.js";
import { fileHandleMethods, storedKeys } from "../support/state-files.js";

const strings = (v: unknown) => (typeof v === "string" ? v : null);

/** Every store a test makes, closed after it (an open log is a file handle). */
const made: { close(): Promise<void> }[] = [];
function track<S extends { close(): Promise<void> }>(store: S): S {
  made.push(store);
  return store;
}
afterEach(async () => {
  vi.restoreAllMocks();
  for (const s of made.splice(0)) await s.close();
});

async function opened(dir = mkdtempSync(join(tmpdir(), "store-"))) {
  const store = track(new DurableStore<string>(dir, strings));
  await store.open();
  return { dir, store };
}

async function values(dir: string): Promise<Record<string, string>> {
  const { store } = await opened(dir);
  const { entries } = await store.list();
  await store.close();
  return Object.fromEntries(entries.map((e) => [e.key, e.value]));
}

describe("durable store", () => {
  it("concurrent puts share one write and one fdatasync; removals are not synced", async () => {
    const { dir, store } = await opened();
    const before = store.fsyncCounts();
    await Promise.all(Array.from({ length: 24 }, (_, i) => store.put(`job-${i}`, `value ${i}`)));
    const counts = store.fsyncCounts();
    expect(counts.files - before.files).toBeGreaterThanOrEqual(1);
    expect(counts.files - before.files).toBeLessThanOrEqual(2);
    expect(counts.dirs).toBe(before.dirs);
    // One after another, each put is synced on its own.
    await store.put("alone-1", "a");
    await store.put("alone-2", "b");
    expect(store.fsyncCounts().files).toBe(counts.files + 2);
    await store.remove("alone-1");
    await store.remove("never-stored");
    expect(store.fsyncCounts().files).toBe(counts.files + 2);
    expect(await store.count()).toBe(25);
    expect(statSync(join(dir, LOG_NAME)).mode & 0o777).toBe(0o600);
    await store.close();
    const back = await values(dir);
    expect(Object.keys(back)).toHaveLength(25);
    expect(back["job-7"]).toBe("value 7");
    expect(back["alone-1"]).toBeUndefined();
  });

  it("a removal counts at once, reaches the disk with the next put or soon after, and before close ends", async () => {
    const { dir, store } = await opened();
    await store.put("a", "1");
    await store.put("b", "2");
    await store.remove("a");
    expect(await store.count()).toBe(1);
    expect(await store.has("a")).toBe(false);
    expect(await store.get("a")).toBeNull();
    expect((await store.list()).entries.map((e) => e.key)).toEqual(["b"]);
    expect(storedKeys(dir)).toEqual(["a", "b"]); // not written yet
    await store.put("c", "3"); // rides along
    expect(storedKeys(dir)).toEqual(["b", "c"]);
    await store.remove("b");
    await new Promise((r) => setTimeout(r, 100));
    expect(storedKeys(dir)).toEqual(["c"]);
    await store.remove("c");
    await store.close();
    expect(storedKeys(dir)).toEqual([]);
    // A key put again after its removal is there.
    const { store: again } = await opened(dir);
    await again.remove("x");
    await again.put("x", "back");
    expect(await again.count()).toBe(1);
    await again.close();
    expect(await values(dir)).toEqual({ x: "back" });
  });

  it("the last record of a key wins, get reads it, and hostile keys are only data", async () => {
    const { dir, store } = await opened();
    await store.put("../../etc/passwd", "x");
    await store.put("k", "first");
    await store.put("k", "second");
    expect(await store.get("k")).toBe("second");
    expect(await store.get("missing")).toBeNull();
    expect(await store.has("k")).toBe(true);
    await store.close();
    expect(readdirSync(dir).sort()).toEqual([".tmp", LOG_NAME]);
    expect(await values(dir)).toEqual({ "../../etc/passwd": "x", k: "second" });
  });

  it("a value JSON cannot carry throws at once, and the store goes on", async () => {
    const { dir } = await opened();
    const store = track(new DurableStore<unknown>(dir, (v) => v));
    await store.open();
    expect(() => store.put("bad", { n: 1n })).toThrow();
    await store.put("good", 1);
    expect((await store.list()).entries).toEqual([{ key: "good", value: 1 }]);
  });

  it("a last line a crash cut short is dropped; every whole record survives", async () => {
    const { dir, store } = await opened();
    await store.put("a", "1");
    await store.put("b", "2");
    await store.close();
    appendFileSync(join(dir, LOG_NAME), encodeRecord({ op: "put", key: "c", value: "3" }).subarray(0, 20));
    const { store: again } = await opened(dir);
    const { entries, corrupt } = await again.list();
    expect(entries.map((e) => e.key)).toEqual(["a", "b"]);
    expect(corrupt).toEqual([]);
    // The torn bytes are gone, so the next append starts on a line of its own.
    await again.put("d", "4");
    await again.close();
    expect(await values(dir)).toEqual({ a: "1", b: "2", d: "4" });
  });

  it("a damaged line is moved to records.corrupt and reported once with its key", async () => {
    const { dir, store } = await opened();
    await store.put("a", "1");
    await store.put("job-x", "2");
    await store.put("c", "3");
    await store.close();
    const log = join(dir, LOG_NAME);
    const text = readFileSync(log, "utf8");
    writeFileSync(log, text.replace('"value":"2"', '"value":"9"')); // a flipped byte
    const { store: again } = await opened(dir);
    const { entries, corrupt } = await again.list();
    expect(entries.map((e) => e.key)).toEqual(["a", "c"]);
    expect(corrupt).toEqual([{ path: join(dir, CORRUPT_NAME), key: "job-x", reason: "checksum mismatch" }]);
    expect(readFileSync(join(dir, CORRUPT_NAME), "utf8")).toContain('"value":"9"');
    expect((await again.list()).corrupt).toEqual([]);
    await again.close();
    expect(await (await opened(dir)).store.list()).toMatchObject({ corrupt: [] });
  });

  it("a damaged line names no job when a later record of its key follows it", async () => {
    const { dir, store } = await opened();
    await store.put("k", "old");
    await store.close();
    const log = join(dir, LOG_NAME);
    writeFileSync(log, readFileSync(log, "utf8").replace('"old"', '"odd"'));
    appendFileSync(log, encodeRecord({ op: "del", key: "k" }));
    const { store: again } = await opened(dir);
    expect(await again.list()).toEqual({
      entries: [],
      corrupt: [{ path: join(dir, CORRUPT_NAME), key: null, reason: "checksum mismatch" }],
    });
  });

  it("a flipped bit that makes a line name another job cannot take that job's record away", async () => {
    const { dir, store } = await opened();
    await store.put("job-3", "result 3");
    await store.put("job-1", "result 1");
    await store.remove("job-1");
    await store.close();
    const log = join(dir, LOG_NAME);
    const lines = readFileSync(log, "utf8").split("\n");
    lines[2] = (lines[2] as string).replace('"job-1"', '"job-3"');
    writeFileSync(log, lines.join("\n"));
    const { store: again } = await opened(dir);
    const { entries, corrupt } = await again.list();
    // job-1's removal is lost (it comes back, as a lost reply would); job-3 keeps its record.
    expect(Object.fromEntries(entries.map((e) => [e.key, e.value]))).toEqual({
      "job-3": "result 3",
      "job-1": "result 1",
    });
    // Kept for the operator, but naming no job: job-3 is delivered, not failed back.
    expect(corrupt).toEqual([{ path: join(dir, CORRUPT_NAME), key: null, reason: "checksum mismatch" }]);
  });

  it("a record this version refuses replaces what its key held", async () => {
    const { dir, store } = await opened();
    await store.put("k", "usable");
    await store.close();
    appendFileSync(join(dir, LOG_NAME), encodeRecord({ op: "put", key: "k", value: 42 }));
    const { store: again } = await opened(dir);
    expect(await again.list()).toEqual({
      entries: [],
      corrupt: [{ path: join(dir, CORRUPT_NAME), key: "k", reason: "unexpected content" }],
    });
  });

  it("takes in records left as one file each by earlier versions, then deletes the files", async () => {
    const dir = mkdtempSync(join(tmpdir(), "store-"));
    writeFileSync(join(dir, "0a1b.json"), JSON.stringify({ key: "old-1", value: "v1" }));
    writeFileSync(join(dir, "0c2d.json"), JSON.stringify({ key: "old-2", value: "v2" }));
    writeFileSync(join(dir, "0e3f.json"), '{"key":"old-3","value":"v'); // torn by a crash
    const { store } = await opened(dir);
    const { entries, corrupt } = await store.list();
    expect(entries.map((e) => [e.key, e.value])).toEqual([
      ["old-1", "v1"],
      ["old-2", "v2"],
    ]);
    expect(corrupt).toMatchObject([{ path: join(dir, "0e3f.json.corrupt"), key: "old-3" }]);
    expect(readdirSync(dir).filter((n) => n.endsWith(".json"))).toEqual([]);
    expect(storedKeys(dir)).toEqual(["old-1", "old-2"]);
  });

  it("rewrites the log once most of it is superseded, and reads the same before and after", async () => {
    const { dir, store } = await opened();
    const big = "x".repeat(4096);
    await store.put("keep", "kept");
    for (let i = 0; i < 320; i++) {
      await store.put(`job-${i}`, `${big}${i}`);
      await store.remove(`job-${i}`);
    }
    await store.put("last", "l");
    // Compaction runs between batches; this read queues behind it.
    expect(await store.get("keep")).toBe("kept");
    expect(statSync(join(dir, LOG_NAME)).size).toBeLessThan(1 << 20);
    expect(await store.get("last")).toBe("l");
    await store.put("after", "a");
    await store.close();
    expect(await values(dir)).toEqual({ keep: "kept", last: "l", after: "a" });
  });
});

describe("durable store on a failing disk", () => {
  /** Make fs.promises.open fail with `code` for the paths `when` picks, while `on()` says so. */
  function failOpen(code: string, when: (path: string, flags: string) => boolean) {
    const original = fsp.open;
    let on = true;
    vi.spyOn(fsp, "open").mockImplementation(((path: string, flags?: string, mode?: number) =>
      on && when(String(path), String(flags ?? "r"))
        ? Promise.reject(Object.assign(new Error(`${code}: injected`), { code }))
        : original(path, flags, mode)) as never);
    return { off: () => (on = false) };
  }

  it("a directory fsync failing after the open-time rewrite loses nothing; the next put syncs it", async () => {
    const { dir, store } = await opened();
    await store.put("A", "a1");
    await store.put("A", "a2");
    await store.put("B", "b");
    await store.close();
    appendFileSync(join(dir, LOG_NAME), encodeRecord({ op: "put", key: "C", value: "c" }).subarray(0, 12));
    const dirSync = failOpen("EIO", (path, flags) => path === dir && flags === "r");
    const again = track(new DurableStore<string>(dir, strings));
    await again.open();
    dirSync.off();
    const dirsBefore = again.fsyncCounts().dirs;
    await again.put("D", "d");
    expect(again.fsyncCounts().dirs).toBe(dirsBefore + 1);
    expect(await again.get("A")).toBe("a2");
    await again.close();
    expect(await values(dir)).toEqual({ A: "a2", B: "b", D: "d" });
  });

  it("on a disk full at start, damaged lines stay in the log until their copy is made, compaction included", async () => {
    const { dir, store } = await opened();
    await store.put("job-x", "lost");
    await store.put("keep", "kept");
    await store.close();
    const log = join(dir, LOG_NAME);
    writeFileSync(log, readFileSync(log, "utf8").replace('"lost"', '"l0st"'));
    const full = failOpen("ENOSPC", (path, flags) => flags !== "r" && path !== log);
    const again = track(new DurableStore<string>(dir, strings));
    await again.open();
    expect((await again.list()).corrupt).toEqual([{ path: log, key: "job-x", reason: "checksum mismatch" }]);
    // Space is back: enough churn to compact the log; the damaged line is copied out first.
    full.off();
    for (let i = 0; i < 300; i++) {
      await again.put(`j${i}`, "y".repeat(4096));
      await again.remove(`j${i}`);
    }
    expect(await again.get("keep")).toBe("kept");
    expect(statSync(log).size).toBeLessThan(1 << 20);
    expect(readFileSync(join(dir, CORRUPT_NAME), "utf8")).toContain('"l0st"');
    await again.close();
    expect(await values(dir)).toEqual({ keep: "kept" });
  });

  it("a store whose open failed still lists the log and the files of an earlier version", async () => {
    const { dir, store } = await opened();
    await store.put("in-log", "1");
    await store.close();
    writeFileSync(join(dir, "0a1b.json"), JSON.stringify({ key: "old", value: "2" }));
    const full = failOpen("ENOSPC", (_path, flags) => flags !== "r");
    vi.spyOn(fsp, "mkdir").mockRejectedValue(
      Object.assign(new Error("ENOSPC: injected"), { code: "ENOSPC" }),
    );
    const again = track(new DurableStore<string>(dir, strings));
    await expect(again.open()).rejects.toThrow("ENOSPC");
    const { entries } = await again.list();
    expect(entries.map((e) => [e.key, e.value])).toEqual([
      ["in-log", "1"],
      ["old", "2"],
    ]);
    // The next write opens it (space is back), taking the old file in.
    full.off();
    vi.mocked(fsp.mkdir).mockRestore();
    await again.put("new", "3");
    await again.close();
    expect(await values(dir)).toEqual({ "in-log": "1", old: "2", new: "3" });
  });
});

describe("removals waiting for a write", () => {
  it("a removal made while a slow sync runs still reaches the disk without another put", async () => {
    const { dir, store } = await opened();
    await store.put("a", "1");
    const proto = await fileHandleMethods();
    const datasync = proto["datasync"] as (...a: unknown[]) => Promise<unknown>;
    vi.spyOn(proto, "datasync").mockImplementation(async function (this: unknown) {
      await new Promise((r) => setTimeout(r, 60));
      return datasync.call(this);
    });
    const slow = store.put("c", "3");
    await new Promise((r) => setTimeout(r, 5));
    await store.remove("a"); // its timer fires while the put is still syncing
    await slow;
    await new Promise((r) => setTimeout(r, 150));
    expect(storedKeys(dir)).toEqual(["c"]);
  });

  it("counts a key put, removed and put again once; a removal in the batch being written reads as removed", async () => {
    const { store } = await opened();
    await store.put("b", "1");
    const again = store.put("b", "2");
    await store.remove("b");
    const third = store.put("b", "3");
    expect(await store.count()).toBe(1);
    await Promise.all([again, third]);
    await store.remove("b");
    await store.put("x", "y"); // the removal rides with this write
    expect(await store.has("b")).toBe(false);
    expect(await store.count()).toBe(1);
  });

  it("a removal whose write failed is tried again, not dropped", async () => {
    const { dir, store } = await opened();
    await store.put("a", "1");
    const proto = await fileHandleMethods();
    const write = proto["write"] as (...a: unknown[]) => Promise<unknown>;
    let failing = true;
    vi.spyOn(proto, "write").mockImplementation(function (this: unknown, ...args: unknown[]) {
      return failing
        ? Promise.reject(Object.assign(new Error("ENOSPC: injected"), { code: "ENOSPC" }))
        : write.apply(this, args);
    });
    await store.remove("a");
    await new Promise((r) => setTimeout(r, 60)); // its first write fails
    expect(await store.has("a")).toBe(false);
    failing = false;
    await new Promise((r) => setTimeout(r, 1200)); // tried again after a pause
    expect(storedKeys(dir)).toEqual([]);
    // On a disk that keeps failing, close gives up on a removal instead of trying forever.
    await store.put("b", "2");
    failing = true;
    await store.remove("b");
    await store.close();
    failing = false;
    expect(storedKeys(dir)).toEqual(["b"]);
  });
});
