// doctor knows what run will do: the API key checked with an authenticated call that changes
// nothing, every model file servable or refused with run's reason. (Its inference verdict, the
// same check run makes, is in gpu.test.ts.)
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
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
    AITBC_API_KEY: "",
    AITBC_API_KEY_FILE: "",
    ...env,
  });
  return { code: r.code, checks: (JSON.parse(r.stdout) as { checks: Check[] }).checks };
}

describe("doctor", () => {
  it("checks the API key with a call that registers nothing: refused → fail, accepted → ok", async () => {
    coordinator = (await coordinatorWithReceipts()).coordinator;
    const events: string[] = [];
    coordinator.on((e) => events.push(e.type));
    const wrong = await doctor(["--coordinator", coordinator.url], { AITBC_API_KEY: "not-the-key" });
    const bad = wrong.checks.find((c) => c.name === "credentials")!;
    expect(bad.status).toBe("fail");
    expect(bad.detail).toMatch(/refuses this API key \(HTTP 401\): run would exit 2/);
    expect(wrong.code).toBe(1);

    const right = await doctor(["--coordinator", coordinator.url], { AITBC_API_KEY: API_KEY });
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
});
