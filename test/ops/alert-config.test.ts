// --alert-webhook as a run setting: flag or AITBC_ALERT_WEBHOOK, an http(s) URL, and a bad value
// refused naming the flag without echoing the URL (a Slack webhook's URL is its credential). The
// alert thresholds as settings: flag, environment, config file, and what the watch receives.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, resolveRunConfig } from "../../src/config.js";
import { alertSettings } from "../../src/fleet/host-watch.js";

const base = {
  coordinator: "http://127.0.0.1:9",
  apiKey: "k-123456",
  models: mkdtempSync(join(tmpdir(), "m-")),
};
const hook = "https://hooks.slack.com/services/T000/B000/SECRETXYZ";

describe("--alert-webhook", () => {
  it("is off by default, taken from the flag or the environment", () => {
    expect(resolveRunConfig({ flags: base, env: {} }).alertWebhook).toBeUndefined();
    expect(resolveRunConfig({ flags: { ...base, alertWebhook: hook }, env: {} }).alertWebhook).toBe(hook);
    expect(resolveRunConfig({ flags: base, env: { AITBC_ALERT_WEBHOOK: hook } }).alertWebhook).toBe(hook);
  });

  it.each(["ftp://hooks.example/SECRETXYZ", "not a url SECRETXYZ"])(
    "refuses %s naming the flag, not the value",
    (v) => {
      let err: unknown;
      try {
        resolveRunConfig({ flags: { ...base, alertWebhook: v }, env: {} });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(/^--alert-webhook: /);
      expect((err as Error).message).not.toContain("SECRETXYZ");
    },
  );
});

describe("--alert-no-job-minutes and --alert-earnings-stalled-minutes", () => {
  it("default to 30 and 60 min; flag, environment and config file set them; the watch gets ms", () => {
    const dflt = resolveRunConfig({ flags: base, env: {} });
    expect(alertSettings(dflt)).toEqual({
      alertWebhook: undefined,
      noJobMs: 30 * 60_000,
      earningsStalledMs: 60 * 60_000,
    });
    const flags = resolveRunConfig({
      flags: { ...base, alertNoJobMinutes: "5", alertEarningsStalledMinutes: "90" },
      env: {},
    });
    expect(alertSettings(flags)).toMatchObject({ noJobMs: 5 * 60_000, earningsStalledMs: 90 * 60_000 });
    const env = resolveRunConfig({
      flags: base,
      env: { AITBC_ALERT_NO_JOB_MINUTES: "7", AITBC_ALERT_EARNINGS_STALLED_MINUTES: "120" },
    });
    expect([env.alertNoJobMinutes, env.alertEarningsStalledMinutes]).toEqual([7, 120]);
    const file = join(mkdtempSync(join(tmpdir(), "cfg-")), "config.json");
    writeFileSync(file, JSON.stringify({ alertNoJobMinutes: 15, alertEarningsStalledMinutes: 45 }));
    const fromFile = resolveRunConfig({ flags: base, env: {}, configFile: file });
    expect([fromFile.alertNoJobMinutes, fromFile.alertEarningsStalledMinutes]).toEqual([15, 45]);
  });

  it.each([
    ["alertNoJobMinutes", "0", "--alert-no-job-minutes"],
    ["alertEarningsStalledMinutes", "0.05", "--alert-earnings-stalled-minutes"],
    ["alertEarningsStalledMinutes", "1e3", "--alert-earnings-stalled-minutes"],
  ])("refuses %s=%s naming the flag", (key, v, flag) => {
    expect(() => resolveRunConfig({ flags: { ...base, [key]: v }, env: {} })).toThrow(
      new RegExp(`^${flag}: must be a number in \\[0\\.1, 10080\\]`),
    );
  });
});
