// The operator's drains survive a restart: `gpu drain` is kept in the state directory (replaced
// whole, no temp file left), applied from the start by the next health watch on that directory,
// and cleared by undrain; a bad file is a clear error naming it, not a silent undrain.
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DrainFileError, drainsPath } from "../../src/fleet/drain-file.js";
import { type DrainState, type HostHealth, watchHostHealth } from "../../src/fleet/gpu-drain.js";
import { createGpuInfoSource } from "../../src/gpu/index.js";
import type { GpuInfoSource } from "../../src/gpu/types.js";
import { silentLogger } from "../../src/log.js";
import { fakeDevice } from "../fake-nvml/config.js";
import { fake, useFakeConfig } from "../support/gpu.js";

const log = silentLogger();
const open: { src: GpuInfoSource; health: HostHealth | null }[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) {
    await o.health?.stop();
    await o.src.close();
  }
});

const uuid = (i: number) => fakeDevice(i).uuid!;

/** A host of two fake cards watched with `stateDir`; what its drain listener heard. */
async function start(stateDir: string) {
  useFakeConfig({ driver: "550.54.15", cuda: 12040, devices: [fakeDevice(0), fakeDevice(1)] });
  const src = await createGpuInfoSource({
    nvmlLibrary: fake.current,
    log,
    nvidiaSmi: "/nonexistent/nvidia-smi",
  });
  const slot: { src: GpuInfoSource; health: HostHealth | null } = { src, health: null };
  open.push(slot);
  const changes: [string, DrainState | null][] = [];
  const targets = [0, 1].map((i) => ({
    key: `w${i}`,
    minerId: `rig-gpu${i}`,
    indexes: [i],
    uuids: [uuid(i)],
  }));
  const health = await watchHostHealth(src, targets, log, (k, s) => changes.push([k, s]), {
    stateDir,
    intervalMs: 60_000,
  });
  slot.health = health;
  await health.started;
  return { drain: health.drain, changes };
}

describe("the operator's drains in the state directory", () => {
  it("gpu drain is kept, applied at the next start, and cleared by undrain", async () => {
    const dir = mkdtempSync(join(tmpdir(), "drains-"));
    const first = await start(dir);
    expect(existsSync(drainsPath(dir))).toBe(false); // nothing drained: nothing written
    await first.drain.command("drain", "1");
    expect(JSON.parse(readFileSync(drainsPath(dir), "utf8"))).toEqual({ version: 1, drained: [uuid(1)] });
    expect(existsSync(`${drainsPath(dir)}.tmp`)).toBe(false);

    // A restart: card 1 is drained from the start, by the operator, and its worker is told so.
    const second = await start(dir);
    expect(second.changes).toEqual([["w1", expect.objectContaining({ by: "operator", failRunning: false })]]);
    expect(second.drain.state("w0")).toBeNull();
    expect(second.drain.verdicts().map((v) => [v.index, v.drained])).toEqual([
      [0, false],
      [1, true],
    ]);

    expect((await second.drain.command("undrain", "rig-gpu1")).message).toBe("rig-gpu1 takes jobs");
    expect(JSON.parse(readFileSync(drainsPath(dir), "utf8"))).toEqual({ version: 1, drained: [] });
    const third = await start(dir);
    expect(third.changes).toEqual([]);
  });

  it.each([
    ["not JSON", "{drained:", /gpu-drains\.json is not JSON: fix it .* or delete it to undrain every card$/],
    [
      "a wrong shape",
      JSON.stringify({ version: 1, drained: [7] }),
      /gpu-drains\.json: drained\.0: .*; fix it or delete it to undrain every card$/,
    ],
    [
      "an unknown version",
      JSON.stringify({ version: 2, drained: [] }),
      /gpu-drains\.json: version: .*; fix it or delete it/,
    ],
  ])("a file with %s is a clear error naming it", async (_, text, message) => {
    const dir = mkdtempSync(join(tmpdir(), "drains-"));
    writeFileSync(drainsPath(dir), text);
    const err = await start(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DrainFileError);
    expect((err as Error).message).toContain(drainsPath(dir));
    expect((err as Error).message).toMatch(message);
  });
});
