// Group commit, with a sync the test finishes by hand: who waits for which sync.
import { mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DurableStore } from "../../src/miner/durable-store.js";
import { GroupSync } from "../../src/miner/group-sync.js";

/** A sync that stays running until the test ends it. */
function manualSync() {
  const pending: { resolve(): void; reject(e: Error): void }[] = [];
  const g = new GroupSync(
    () =>
      new Promise<void>((resolve, reject) => {
        pending.push({ resolve, reject });
      }),
  );
  return { g, pending };
}

const settled = async (p: Promise<unknown>) => {
  let done = false;
  void p.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  for (let i = 0; i < 5; i++) await Promise.resolve();
  return done;
};

describe("group sync", () => {
  it("a caller arriving during a sync waits for the next one, which serves every caller that arrived meanwhile", async () => {
    const { g, pending } = manualSync();
    const first = g.request();
    const second = g.request();
    const third = g.request();
    expect(g.runs).toBe(1);
    pending[0]!.resolve();
    await first;
    // The first sync may have begun before the second and third callers' writes: not theirs.
    expect(await settled(second)).toBe(false);
    await new Promise((r) => setImmediate(r));
    expect(g.runs).toBe(2);
    pending[1]!.resolve();
    await Promise.all([second, third]);
    expect(g.runs).toBe(2);
    // Idle again: the next caller starts its own sync.
    const fourth = g.request();
    expect(g.runs).toBe(3);
    pending[2]!.resolve();
    await fourth;
  });

  it("a failed sync fails the callers it served; the next callers get a fresh sync", async () => {
    const { g, pending } = manualSync();
    const first = g.request();
    const second = g.request();
    pending[0]!.reject(new Error("EIO"));
    await expect(first).rejects.toThrow("EIO");
    await new Promise((r) => setImmediate(r));
    pending[1]!.reject(new Error("ENOSPC"));
    await expect(second).rejects.toThrow("ENOSPC");
    const third = g.request();
    pending[2]!.resolve();
    await expect(third).resolves.toBeUndefined();
  });

  it("a durable store under concurrent puts fsyncs every file but shares directory syncs", async () => {
    const dir = mkdtempSync(join(tmpdir(), "group-sync-"));
    const store = new DurableStore<string>(dir, (v) => (typeof v === "string" ? v : null));
    await store.open();
    await Promise.all(Array.from({ length: 24 }, (_, i) => store.put(`job-${i}`, `value ${i}`)));
    const { entries } = await store.list();
    expect(entries.map((e) => e.value).sort()).toEqual(
      Array.from({ length: 24 }, (_, i) => `value ${i}`).sort(),
    );
    const counts = store.fsyncCounts();
    expect(counts.files).toBe(24);
    expect(counts.dirs).toBeGreaterThanOrEqual(1);
    expect(counts.dirs).toBeLessThanOrEqual(24);
    // One after another, each put needs its own directory sync.
    await store.put("alone-1", "a");
    await store.put("alone-2", "b");
    expect(store.fsyncCounts().dirs).toBe(counts.dirs + 2);
    // Removals are not synced (a removal lost in a crash only brings back finished work).
    await store.remove("alone-1");
    expect(store.fsyncCounts()).toEqual({ files: 26, dirs: counts.dirs + 2 });
    expect(readdirSync(dir).filter((n) => n.endsWith(".json"))).toHaveLength(25);
  });
});
