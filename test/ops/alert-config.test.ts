// --alert-webhook as a run setting: flag or AITBC_ALERT_WEBHOOK, an http(s) URL, and a bad value
// refused naming the flag without echoing the URL (a Slack webhook's URL is its credential).
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, resolveRunConfig } from "../../src/config.js";

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
