// NVML is one session per process; a worker thread that loads the addon and exits must not shut
// it down under the main thread.
import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadAddon } from "../../src/gpu/addon.js";
import { fakeDevice, writeFakeNvmlConfig } from "../fake-nvml/config.js";
import { fakeNvmlPaths } from "../setup/fake-nvml.js";

const root = join(import.meta.dirname, "..", "..");

describe("addon and worker threads", () => {
  it("a worker's exit leaves the main thread's NVML session open", () => {
    const addon = loadAddon();
    expect(addon.ok).toBe(true);
    if (!addon.ok) return;
    const config = writeFakeNvmlConfig(join(mkdtempSync(join(tmpdir(), "nvml-worker-")), "fake.conf"), {
      devices: [fakeDevice(0), fakeDevice(1)],
    });
    const script = `
      const { Worker } = require("node:worker_threads");
      const a = require(${JSON.stringify(addon.path)});
      a.open(${JSON.stringify(fakeNvmlPaths(root).current)}).then(() => {
        const w = new Worker("require(" + JSON.stringify(${JSON.stringify(addon.path)}) + ")", { eval: true });
        w.on("exit", () => console.log(JSON.stringify({ open: a.isOpen(), devices: a.snapshotPacked().count })));
      });`;
    const out = execFileSync(process.execPath, ["-e", script], {
      env: { ...process.env, FAKE_NVML_CONFIG: config },
      encoding: "utf8",
    });
    expect(JSON.parse(out)).toEqual({ open: true, devices: 2 });
  });

  it("one count: each open is a hold, a worker's exit returns only its own, the last close shuts down", () => {
    const addon = loadAddon();
    expect(addon.ok).toBe(true);
    if (!addon.ok) return;
    const config = writeFakeNvmlConfig(join(mkdtempSync(join(tmpdir(), "nvml-worker-")), "fake.conf"), {
      devices: [fakeDevice(0)],
    });
    const path = JSON.stringify(addon.path);
    const lib = JSON.stringify(fakeNvmlPaths(root).current);
    // The worker opens twice and closes once, then exits still holding one.
    const worker = `const a = require(${path}); a.open(${lib}).then(() => a.open(${lib})).then(() => a.close());`;
    const script = `
      const { Worker } = require("node:worker_threads");
      const a = require(${path});
      const seen = [];
      (async () => {
        await a.open(${lib});
        await a.open(${lib});
        a.close();
        seen.push(a.isOpen());
        const other = await a.open("/nonexistent/libnvidia-ml.so.1");
        seen.push(other.available, other.reason.includes("already open"));
        await new Promise((r) => new Worker(${JSON.stringify(worker)}, { eval: true }).on("exit", r));
        seen.push(a.isOpen());
        a.close();
        seen.push(a.isOpen());
        a.close();
        seen.push(a.isOpen(), (await a.open(${lib})).available);
        console.log(JSON.stringify(seen));
      })();`;
    const out = execFileSync(process.execPath, ["-e", script], {
      env: { ...process.env, FAKE_NVML_CONFIG: config },
      encoding: "utf8",
    });
    expect(JSON.parse(out)).toEqual([true, false, true, true, false, false, true]);
  });
});
