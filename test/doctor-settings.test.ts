// doctor takes ten of run's settings from the settings table: the flag, argument and environment
// name from the row, the value from the same sources in the same order, parsed by the same schema.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { describe, expect, it } from "vitest";
import { addDoctorOptions, DOCTOR_KEYS, doctorSettings } from "../src/commands/doctor-settings.js";
import { resolveRunConfig } from "../src/config.js";
import { CONFIG_ENV, envOf, RUN_SETTINGS } from "../src/settings.js";

const models = mkdtempSync(join(tmpdir(), "doctor-settings-models-"));
const runBase = { coordinator: "http://127.0.0.1:9", apiKey: "k-123456", models };

/** What a call gives: its value, or the error it throws. */
function outcome(f: () => unknown): { value: unknown } | { error: string } {
  try {
    return { value: f() };
  } catch (err) {
    return { error: `${(err as Error).name}: ${(err as Error).message}` };
  }
}

describe("doctor's settings", () => {
  it("are run's rows: each option's flag and argument from the row, its help naming the derived variable", () => {
    const cmd = addDoctorOptions(new Command("doctor"));
    const options = new Map(cmd.options.map((o) => [o.long, o]));
    expect(DOCTOR_KEYS).toHaveLength(10);
    for (const key of DOCTOR_KEYS) {
      const row = RUN_SETTINGS[key];
      const o = options.get(row.flag);
      expect(o, row.flag).toBeDefined();
      const arg = "arg" in row ? row.arg : undefined;
      expect(o!.flags, row.flag).toBe(arg === undefined ? row.flag : `${row.flag} <${arg}>`);
      expect(o!.attributeName(), row.flag).toBe(key);
      expect(o!.description, row.flag).toMatch(new RegExp(`; env ${envOf(key)}$`));
      // No commander default: the environment and the config file decide at action time.
      expect(o!.defaultValue, row.flag).toBeUndefined();
    }
    expect(options.get("--config")?.description).toMatch(new RegExp(`; env ${CONFIG_ENV}$`));
  });

  it("parse each value from the environment exactly as run does: the same value, or run's refusal", () => {
    const values: Partial<Record<(typeof DOCTOR_KEYS)[number], string[]>> = {
      allowCpuInference: ["true", "false", "1", "0", "yes", "no", "maybe", "on", "TRUE"],
      allowInsecureHttp: ["yes", "no", "maybe"],
      gpu: ["auto", "cpu", "gpu"],
      coordinator: ["http://127.0.0.1:7/", "ftp://x", "not a url"],
      nvmlLibrary: ["/opt/libnvidia-ml.so.1"],
    };
    let refused = 0;
    for (const [key, list] of Object.entries(values) as [keyof typeof values, string[]][]) {
      for (const v of list) {
        const env = { [envOf(key)]: v };
        const flags = key === "coordinator" ? { apiKey: "k-123456", models } : runBase;
        const run = outcome(() => resolveRunConfig({ flags, env })[key]);
        const doctor = outcome(() => doctorSettings({}, env)[key]);
        expect(doctor, `${envOf(key)}=${v}`).toEqual(run);
        if ("error" in run) {
          expect(run.error, `${envOf(key)}=${v}`).toMatch(/^ConfigError: /);
          refused++;
        }
      }
    }
    // The comparison covers refusals, not only values both accept.
    expect(refused).toBeGreaterThanOrEqual(6);
  });

  it("read flags > environment > --config file, as run does, and require none", () => {
    const dir = mkdtempSync(join(tmpdir(), "doctor-settings-"));
    const file = join(dir, "miner.json");
    writeFileSync(
      file,
      JSON.stringify({
        coordinator: "https://file.example",
        "allow-cpu-inference": true,
        gpu: "cpu",
        stateDir: join(dir, "state"),
        concurrency: 3,
      }),
    );
    const fromFile = doctorSettings({ config: file }, {});
    expect(fromFile).toMatchObject({
      coordinator: "https://file.example",
      allowCpuInference: true,
      gpu: "cpu",
      stateDir: join(dir, "state"),
    });
    // The file named by the environment's twin of --config, as run reads it.
    expect(doctorSettings({}, { [CONFIG_ENV]: file }).coordinator).toBe("https://file.example");
    const env = { [envOf("coordinator")]: "https://env.example", [envOf("gpu")]: "auto" };
    expect(doctorSettings({ config: file }, env)).toMatchObject({
      coordinator: "https://env.example",
      gpu: "auto",
    });
    expect(doctorSettings({ config: file, coordinator: "https://flag.example" }, env).coordinator).toBe(
      "https://flag.example",
    );
    // run requires a coordinator; doctor checks one only when given one. Defaults are run's.
    const none = doctorSettings({}, {});
    expect(none.coordinator).toBeUndefined();
    expect(none).toMatchObject({ gpu: "auto", allowCpuInference: false, allowInsecureHttp: false });
    // A value in the file run refuses is refused in run's words.
    writeFileSync(file, JSON.stringify({ gpu: "cuda" }));
    expect(outcome(() => doctorSettings({ config: file }, {}))).toEqual(
      outcome(() => resolveRunConfig({ flags: runBase, env: {}, configFile: file })),
    );
  });

  it("refuse what run refuses in the settings doctor does not use: a misspelled key, a value out of range", () => {
    const file = join(mkdtempSync(join(tmpdir(), "doctor-settings-")), "miner.json");
    for (const body of [{ concurency: 2 }, { concurrency: 999 }, { "heartbeat-interval": "often" }]) {
      writeFileSync(file, JSON.stringify(body));
      const run = outcome(() => resolveRunConfig({ flags: runBase, env: {}, configFile: file }));
      expect(run, JSON.stringify(body)).toMatchObject({ error: expect.stringMatching(/^ConfigError: /) });
      expect(
        outcome(() => doctorSettings({ config: file }, {})),
        JSON.stringify(body),
      ).toEqual(run);
    }
    // The same from a variable doctor has no flag for.
    const env = { [envOf("concurrency")]: "0" };
    expect(outcome(() => doctorSettings({}, env))).toEqual(
      outcome(() => resolveRunConfig({ flags: runBase, env })),
    );
  });
});
