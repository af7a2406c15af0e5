// doctor knows what run will do: the API key checked with an authenticated call that changes
// nothing, every model file servable or refused with run's reason. (Its inference verdict, the
// same check run makes, is in gpu.test.ts.)
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { CONFIG_ENV, envOf, RUN_SETTINGS } from "../../src/settings.js";
import { runCli } from "../support/cli.js";
import { API_KEY, coordinatorWithReceipts, modelsDir } from "../support/harness.js";

let coordinator: LocalCoordinator | null = null;
afterEach(async () => {
  await coordinator?.close();
  coordinator = null;
});

interface Check {
  name: string;
  status: "ok" | "warn" | "fail";
  detail: string;
  fix?: string;
}

async function doctor(args: string[], env: NodeJS.ProcessEnv = {}) {
  const dir = mkdtempSync(join(tmpdir(), "doctor-"));
  const r = await runCli(["doctor", "--json", "--gpu", "cpu", "--state-dir", join(dir, "state"), ...args], {
    [envOf("apiKey")]: "",
    [envOf("apiKeyFile")]: "",
    [envOf("coordinator")]: "",
    [CONFIG_ENV]: "",
    ...env,
  });
  return { code: r.code, checks: (JSON.parse(r.stdout) as { checks: Check[] }).checks };
}

describe("doctor", () => {
  it("checks the API key with a call that registers nothing: refused → fail, accepted → ok", async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    const events: string[] = [];
    coordinator.on((e) => events.push(e.type));
    const wrong = await doctor(["--coordinator", coordinator.url], { [envOf("apiKey")]: "not-the-key" });
    const bad = wrong.checks.find((c) => c.name === "credentials")!;
    expect(bad.status).toBe("fail");
    expect(bad.detail).toMatch(/refuses this API key \(HTTP 401\): run would exit 2/);
    expect(wrong.code).toBe(1);

    const right = await doctor(["--coordinator", coordinator.url], { [envOf("apiKey")]: API_KEY });
    expect(right.checks.find((c) => c.name === "credentials")).toMatchObject({ status: "ok" });
    // Nothing was registered or changed on the coordinator.
    expect(coordinator.miners()).toHaveLength(0);
    expect(events).not.toContain("register");
    expect(events).not.toContain("heartbeat");
  });

  it("lists every model file: servable, or refused with the reason run gives", async () => {
    const dir = mkdtempSync(join(tmpdir(), "doctor-models-"));
    copyFileSync(join(modelsDir, "tiny.gguf"), join(dir, "good.gguf"));
    const tiny = readFileSync(join(modelsDir, "tiny.gguf"));
    writeFileSync(join(dir, "truncated.gguf"), tiny.subarray(0, Math.floor(tiny.length / 2)));
    writeFileSync(join(dir, "garbage.gguf"), Buffer.from("this is not a model\n".repeat(100)));
    const r = await doctor(["--models", dir]);
    expect(r.checks.find((c) => c.name === "models")).toMatchObject({
      status: "ok",
      detail: expect.stringMatching(/^1 of 3 model file\(s\) servable/),
    });
    const model = (name: string) =>
      r.checks.find((c) => c.name === "model" && c.detail.startsWith(`${name}:`));
    expect(model("good")).toMatchObject({ status: "ok", detail: expect.stringContaining("servable") });
    expect(model("truncated")).toMatchObject({
      status: "warn",
      detail: expect.stringMatching(/refused: truncated/),
    });
    expect(model("garbage")).toMatchObject({
      status: "warn",
      detail: expect.stringMatching(/refused: not a GGUF/),
    });
    // run would mine with the good one: a warning, not a failure. With none servable, a failure.
    expect(r.code).toBe(0);
    const none = mkdtempSync(join(tmpdir(), "doctor-none-"));
    copyFileSync(join(dir, "garbage.gguf"), join(none, "garbage.gguf"));
    const bad = await doctor(["--models", none]);
    expect(bad.checks.find((c) => c.name === "models")).toMatchObject({ status: "fail" });
    expect(bad.code).toBe(1);
  });

  it("takes the coordinator and key from the environment by their derived names, or from --config", async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    const byEnv = await doctor([], { [envOf("coordinator")]: coordinator.url, [envOf("apiKey")]: API_KEY });
    expect(byEnv.checks.find((c) => c.name === "coordinator")).toMatchObject({
      status: "ok",
      detail: `${coordinator.url} answers /health`,
    });
    expect(byEnv.checks.find((c) => c.name === "credentials")).toMatchObject({ status: "ok" });

    // The config file run would read: its coordinator and key file, as run reads them.
    const dir = mkdtempSync(join(tmpdir(), "doctor-config-"));
    const keyFile = (name: string, key: string) => {
      const file = join(dir, name);
      writeFileSync(file, `${key}\n`);
      chmodSync(file, 0o600);
      return file;
    };
    const config = join(dir, "miner.json");
    writeFileSync(
      config,
      JSON.stringify({ coordinator: coordinator.url, "api-key-file": keyFile("right", API_KEY) }),
    );
    const byFile = await doctor(["--config", config]);
    expect(byFile.checks.find((c) => c.name === "credentials")).toMatchObject({ status: "ok" });
    // The environment wins over the file, as in run.
    const wrong = await doctor(["--config", config], {
      [envOf("apiKeyFile")]: keyFile("wrong", "not-the-key"),
    });
    expect(wrong.checks.find((c) => c.name === "credentials")).toMatchObject({ status: "fail" });
  });

  it("refuses a value run refuses, in run's words and with run's exit code", async () => {
    const env = { [envOf("allowCpuInference")]: "maybe" };
    const run = await runCli(
      ["run", "--coordinator", "http://127.0.0.1:9", "--api-key", API_KEY, "--models", modelsDir],
      env,
    );
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(RUN_SETTINGS.allowCpuInference.flag);
    const r = await runCli(["doctor", "--gpu", "cpu"], env);
    expect(r.code).toBe(run.code);
    expect(r.stderr).toBe(run.stderr);
    expect(r.stdout).toBe("");
  });
});
