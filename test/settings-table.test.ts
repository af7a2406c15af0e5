// The settings table (src/settings.ts) is the one place a `run` setting is written: its flag,
// environment twin, config-file key, schema, default and help all come from its row.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { describe, expect, it } from "vitest";
import { addRunOptions, flagsFrom } from "../src/commands/run.js";
import { resolveRunConfig, runSchema, SETTINGS } from "../src/config.js";
import { defaultNvmlLibrary } from "../src/gpu/addon.js";
import { envOf, fromEnv, RUN_SETTINGS } from "../src/settings.js";

const models = mkdtempSync(join(tmpdir(), "settings-models-"));
const base = { coordinator: "http://127.0.0.1:9", apiKey: "k-123456", models };
/** The defaults computed at start, which help names in words. */
const COMPUTED = new Set(["minerId", "threads", "stateDir"]);

describe("the settings table", () => {
  it("is the schema: the same keys, in the table's order", () => {
    expect(Object.keys(runSchema.shape)).toEqual(Object.keys(RUN_SETTINGS));
    expect(SETTINGS.map((s) => s.key)).toEqual(Object.keys(RUN_SETTINGS));
  });

  it("shows each default in help exactly as the schema applies it", () => {
    const defaults = runSchema.parse({ coordinator: "http://127.0.0.1:9" }) as Record<string, unknown>;
    for (const s of SETTINGS.filter((s) => s.key !== "coordinator")) {
      const shown = /\(default: ([^;)]*)[;)]/.exec(s.help)?.[1];
      const value = defaults[s.key];
      if (typeof value === "boolean") {
        // A switch is off unless given: help does not say so.
        expect(value, s.flag).toBe(false);
        expect(shown, s.flag).toBeUndefined();
      } else if (value === undefined) {
        expect(shown, s.flag).toBeUndefined();
      } else if (!COMPUTED.has(s.key)) {
        expect(shown, s.flag).toBe(String(value));
      } else {
        expect(shown, s.flag).toBeDefined();
      }
    }
  });

  it("derives the environment name from the flag, and reads every setting from it and from the config file", () => {
    for (const s of SETTINGS)
      expect(s.env).toBe(`AITBC_${s.flag.slice(2).replaceAll("-", "_").toUpperCase()}`);
    const env = Object.fromEntries(SETTINGS.filter((s) => s.arg === "N").map((s) => [s.env, "64"]));
    const fromEnv = resolveRunConfig({ flags: base, env }) as Record<string, unknown>;
    const file = join(mkdtempSync(join(tmpdir(), "settings-")), "c.json");
    // The flag's spelling works as a config-file key as well as the row's key.
    writeFileSync(
      file,
      JSON.stringify(
        Object.fromEntries(SETTINGS.filter((s) => s.arg === "N").map((s) => [s.flag.slice(2), 64])),
      ),
    );
    const fromFile = resolveRunConfig({ flags: base, env: {}, configFile: file }) as Record<string, unknown>;
    for (const s of SETTINGS.filter((s) => s.arg === "N")) {
      expect(fromEnv[s.key], s.env).toBe(64);
      expect(fromFile[s.key], s.flag).toBe(64);
    }
  });

  it("is `run`'s flags: each row an option whose help names its variable, read back by key", () => {
    const cmd = addRunOptions(new Command("run").exitOverride());
    const options = new Map(cmd.options.map((o) => [o.long, o]));
    for (const s of SETTINGS) {
      const o = options.get(s.flag);
      expect(o, s.flag).toBeDefined();
      expect(o!.description).toBe(`${s.help}; env ${s.env}`);
      expect(o!.required || o!.optional, s.flag).toBe(s.arg !== undefined);
    }
    cmd.parse(["--concurrency", "3", "--ollama-fallback", "--alert-no-job-minutes", "9"], { from: "user" });
    expect(flagsFrom(cmd)).toEqual({ concurrency: "3", ollamaFallback: true, alertNoJobMinutes: "9" });
  });

  it("is what commands without run flags read: fromEnv parses as run does, the NVML loader reads the same name", () => {
    expect(fromEnv("gpu", { [envOf("gpu")]: "cpu" })).toBe("cpu");
    expect(fromEnv("allowCpuInference", { [envOf("allowCpuInference")]: "yes" })).toBe(true);
    // A value run refuses is not taken half-way: the default stands.
    expect(fromEnv("allowCpuInference", { [envOf("allowCpuInference")]: "maybe" })).toBe(false);
    expect(fromEnv("metricsHost", {})).toBe("127.0.0.1");
    // gpu/addon.ts reads its variable by name (it stays light for the probe children): the same one.
    expect(defaultNvmlLibrary({ [envOf("nvmlLibrary")]: "/opt/nvml.so" })).toBe("/opt/nvml.so");
  });
});
