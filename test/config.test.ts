import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, parseIntFlag, resolveRunConfig } from "../src/config.js";

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
    [{ apiKey: undefined }, /an API key is required for --protocol aitbc: --api-key-file/],
    [{ models: undefined }, /--models is required/],
    [{ models: "/nonexistent/dir" }, /--models: \/nonexistent\/dir is not an existing directory/],
    [{ concurrency: "0" }, /--concurrency: /],
    [{ concurrency: "0x10" }, /--concurrency: must be a whole number in \[1, 64\]/],
    [{ concurrency: "1e1" }, /--concurrency: /],
    [{ concurrency: " 16" }, /--concurrency: /],
    [{ concurrency: "16 " }, /--concurrency: /],
    [{ concurrency: "0o10" }, /--concurrency: /],
    [{ concurrency: "2.0" }, /--concurrency: /],
    [{ price: "0x10" }, /--price: /],
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

describe("integer flags", () => {
  it("take plain decimal digits only", () => {
    expect(parseIntFlag("--jobs", "16", 0, 100)).toBe(16);
    expect(parseIntFlag("--jobs", "0", 0, 100)).toBe(0);
    for (const bad of [
      "0x10",
      "0o20",
      "0b1",
      "1e1",
      " 16",
      "16 ",
      "+16",
      "-1",
      "16.0",
      "",
      "Infinity",
      "101",
    ]) {
      expect(() => parseIntFlag("--jobs", bad, 0, 100), bad).toThrow(ConfigError);
    }
    expect(() => parseIntFlag("--jobs", "0x10", 0, 100)).toThrow(
      /--jobs must be a whole number in \[0, 100\]/,
    );
  });

  it("take a JSON number from a config file", () => {
    const file = join(mkdtempSync(join(tmpdir(), "cfg-")), "c.json");
    writeFileSync(file, JSON.stringify({ concurrency: 16 }));
    expect(resolveRunConfig({ flags: base, env: {}, configFile: file }).concurrency).toBe(16);
  });
});

describe("secrets", () => {
  const canary = "canary-SECRET-4242-config";
  const noKey = { ...base, apiKey: undefined };
  const secretFile = (text: string, mode = 0o600) => {
    const file = join(mkdtempSync(join(tmpdir(), "cfg-key-")), "api-key");
    writeFileSync(file, text);
    chmodSync(file, mode);
    return file;
  };

  it("reads the API key from --api-key-file and drops the trailing newline", () => {
    const file = secretFile(`${canary}\n`);
    expect(resolveRunConfig({ flags: { ...noKey, apiKeyFile: file }, env: {} }).apiKey).toBe(canary);
    expect(resolveRunConfig({ flags: noKey, env: { AITBC_API_KEY_FILE: file } }).apiKey).toBe(canary);
    const token = secretFile(`${canary}-bearer\r\n`);
    expect(resolveRunConfig({ flags: { ...noKey, bearerTokenFile: token }, env: {} }).bearerToken).toBe(
      `${canary}-bearer`,
    );
  });

  it("reads systemd's $CREDENTIALS_DIRECTORY/aitbc-api-key when nothing else is given", () => {
    const dir = mkdtempSync(join(tmpdir(), "cfg-cred-"));
    writeFileSync(join(dir, "aitbc-api-key"), canary, { mode: 0o400 });
    expect(resolveRunConfig({ flags: noKey, env: { CREDENTIALS_DIRECTORY: dir } }).apiKey).toBe(canary);
    // An explicit key wins over the credential.
    expect(resolveRunConfig({ flags: base, env: { CREDENTIALS_DIRECTORY: dir } }).apiKey).toBe("k-123456");
  });

  it("refuses a world-readable key file with chmod advice, without its content", () => {
    const file = secretFile(canary, 0o644);
    expect(() => resolveRunConfig({ flags: { ...noKey, apiKeyFile: file }, env: {} })).toThrow(
      `chmod 600 ${file}`,
    );
    try {
      resolveRunConfig({ flags: { ...noKey, apiKeyFile: file }, env: {} });
    } catch (err) {
      expect((err as Error).message).not.toContain("canary");
    }
  });

  it("refuses a key and a key file at once, an empty or multi-line file, a missing file", () => {
    const file = secretFile(canary);
    expect(() => resolveRunConfig({ flags: { ...base, apiKeyFile: file }, env: {} })).toThrow(
      /--api-key and --api-key-file are both set/,
    );
    for (const text of ["\n", `${canary}\nsecond line`]) {
      const f = secretFile(text);
      expect(() => resolveRunConfig({ flags: { ...noKey, apiKeyFile: f }, env: {} })).toThrow(/one line/);
      try {
        resolveRunConfig({ flags: { ...noKey, apiKeyFile: f }, env: {} });
      } catch (err) {
        expect((err as Error).message).not.toContain("canary");
      }
    }
    const dir = mkdtempSync(join(tmpdir(), "cfg-dir-"));
    mkdirSync(join(dir, "sub"));
    expect(() => resolveRunConfig({ flags: { ...noKey, apiKeyFile: join(dir, "none") }, env: {} })).toThrow(
      /cannot read .*ENOENT/,
    );
    expect(() => resolveRunConfig({ flags: { ...noKey, apiKeyFile: join(dir, "sub") }, env: {} })).toThrow(
      /not a regular file/,
    );
  });

  it("never quotes a bad config file", () => {
    const file = join(mkdtempSync(join(tmpdir(), "cfg-")), "c.json");
    writeFileSync(file, `{"apiKey": "${canary}", oops}`);
    expect(() => resolveRunConfig({ flags: base, env: {}, configFile: file })).toThrow(/is not valid JSON/);
    writeFileSync(file, canary);
    try {
      resolveRunConfig({ flags: base, env: {}, configFile: file });
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).not.toContain("canary");
    }
  });

  it("masks URL credentials in errors", () => {
    for (const coordinator of [`http://user:${canary}@coordinator.example.net`, `ftp://u:${canary}@x`]) {
      try {
        resolveRunConfig({ flags: { ...base, coordinator }, env: {} });
        expect.unreachable();
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        expect((err as Error).message).not.toContain(canary);
      }
    }
  });
});
