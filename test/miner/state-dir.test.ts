// One answer to "where is the state directory" for every command: --state-dir, then
// AITBC_STATE_DIR, then stateDir in the --config file (or AITBC_CONFIG), then the default.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { resolveRunConfig } from "../../src/config.js";
import { resolveStateDir } from "../../src/state-dir.js";
import { runCli } from "../support/cli.js";

const dir = mkdtempSync(join(tmpdir(), "state-dir-"));
const config = join(dir, "miner.json");
writeFileSync(config, JSON.stringify({ stateDir: join(dir, "from-config") }));

describe("state directory", () => {
  it("flag > env > config file > default, the same as run resolves it", () => {
    expect(resolveStateDir("/flag", config, { AITBC_STATE_DIR: "/env" })).toBe("/flag");
    expect(resolveStateDir(undefined, config, { AITBC_STATE_DIR: "/env" })).toBe("/env");
    expect(resolveStateDir(undefined, config, {})).toBe(join(dir, "from-config"));
    expect(resolveStateDir(undefined, undefined, { AITBC_CONFIG: config })).toBe(join(dir, "from-config"));
    expect(resolveStateDir(undefined, undefined, { XDG_STATE_HOME: "/xdg" })).toBe("/xdg/aitbc-native-miner");
    const run = resolveRunConfig({
      flags: { coordinator: "http://127.0.0.1:1", apiKey: "k-1234", models: dir },
      configFile: config,
      env: {},
    });
    expect(run.stateDir).toBe(resolveStateDir(undefined, config, {}));
  });

  it("keys generate/show and doctor follow --config's stateDir", async () => {
    expect((await runCli(["keys", "generate", "--config", config], { AITBC_STATE_DIR: "" })).code).toBe(0);
    const shown = await runCli(["keys", "show", "--json"], { AITBC_CONFIG: config, AITBC_STATE_DIR: "" });
    expect(shown.code).toBe(0);
    expect(JSON.parse(shown.stdout).path).toBe(join(dir, "from-config", "miner-key.json"));
    const doctor = await runCli(["doctor", "--config", config], { AITBC_STATE_DIR: "" });
    expect(doctor.stdout).toContain(join(dir, "from-config"));
  });
});
