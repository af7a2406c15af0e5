import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, resolveRunConfig } from "../../src/config.js";

const models = mkdtempSync(join(tmpdir(), "cfg-models-"));
const base = { coordinator: "http://127.0.0.1:9", apiKey: "k-123456", models };

describe("run configuration", () => {
  it("applies defaults and validates types", () => {
    const cfg = resolveRunConfig({ flags: { ...base, concurrency: "4" }, env: {} });
    expect(cfg.concurrency).toBe(4);
    expect(cfg.protocol).toBe("aitbc");
    expect(cfg.backend).toBe("llama");
    expect(cfg.coordinator).toBe("http://127.0.0.1:9");
    expect(cfg.stateDir).toMatch(/aitbc-native-miner$/);
  });

  it("takes flags over environment over config file", () => {
    const file = join(mkdtempSync(join(tmpdir(), "cfg-")), "c.json");
    writeFileSync(
      file,
      JSON.stringify({ "miner-id": "from-file", concurrency: 2, threads: 3, region: "eu" }),
    );
    const env = { AITBC_MINER_ID: "from-env", AITBC_THREADS: "5" };
    const cfg = resolveRunConfig({ flags: { ...base, minerId: "from-flag" }, env, configFile: file });
    expect(cfg.minerId).toBe("from-flag");
    expect(cfg.threads).toBe(5);
    expect(cfg.concurrency).toBe(2);
    expect(cfg.region).toBe("eu");
  });

  it.each([
    [{ coordinator: "not a url" }, /--coordinator: must be an http/],
    [{ coordinator: undefined }, /--coordinator is required \(or set AITBC_COORDINATOR\)/],
    [{ apiKey: undefined }, /--api-key is required/],
    [{ models: undefined }, /--models is required/],
    [{ models: "/nonexistent/dir" }, /--models: \/nonexistent\/dir is not an existing directory/],
    [{ concurrency: "0" }, /--concurrency: /],
    [{ protocol: "grpc" }, /--protocol: /],
    [{ coordinator: "http://coordinator.example.net" }, /--allow-insecure-http/],
  ])("rejects %o with one clear line", (override, message) => {
    const flags: Record<string, unknown> = { ...base, ...override };
    expect(() => resolveRunConfig({ flags, env: {} })).toThrow(ConfigError);
    expect(() => resolveRunConfig({ flags, env: {} })).toThrow(message);
  });

  it("never echoes a secret value in an error", () => {
    try {
      resolveRunConfig({ flags: { ...base, apiKey: "" }, env: {} });
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).not.toContain("k-123456");
    }
  });

  it("allows insecure http to a remote host only when asked", () => {
    const cfg = resolveRunConfig({
      flags: { ...base, coordinator: "http://coordinator.example.net/api/", allowInsecureHttp: true },
      env: {},
    });
    expect(cfg.coordinator).toBe("http://coordinator.example.net/api");
  });

  it("rejects unknown keys in a config file", () => {
    const file = join(mkdtempSync(join(tmpdir(), "cfg-")), "c.json");
    writeFileSync(file, JSON.stringify({ coordinater: "x" }));
    expect(() => resolveRunConfig({ flags: base, env: {}, configFile: file })).toThrow(
      /unknown setting "coordinater"/,
    );
  });
});

describe("coordinator key", () => {
  it("is checked at start", () => {
    expect(() => resolveRunConfig({ flags: { ...base, coordinatorKey: "zz-not-a-key" }, env: {} })).toThrow(
      /--coordinator-key: /,
    );
    const hex = "06721eca9281ab398694078701d62e8bbebb82a8b1e67529539650d05ccae638";
    expect(resolveRunConfig({ flags: { ...base, coordinatorKey: hex }, env: {} }).coordinatorKey).toBe(hex);
  });
});
