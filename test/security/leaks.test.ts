// No secret is ever printed: a canary secret goes in through every door (environment, key files,
// config files, URL credentials) and no byte of the CLI's stdout or stderr may contain it.
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Command } from "commander";
import { describe, expect, it } from "vitest";
import { buildProgram } from "../../src/cli.js";
import { runCli, spawnCli } from "../support/cli.js";
import { modelsDir } from "../support/harness.js";

const CANARY = "canary-SECRET-4242-do-not-print";
const HEX_CANARY = "c0ffee4242".repeat(6).slice(0, 64);

/** Every environment door open at once, all holding the canary. */
const secretEnv = {
  AITBC_API_KEY: CANARY,
  AITBC_BEARER_TOKEN: `${CANARY}-bearer`,
  AITBC_COORDINATOR: `https://miner:${CANARY}@127.0.0.1:1`,
  AITBC_OLLAMA_URL: `http://u:${CANARY}@127.0.0.1:2`,
};

function expectNoCanary(r: { stdout: string; stderr: string }, canary = CANARY): void {
  expect(`${r.stdout}${r.stderr}`).not.toContain(canary);
  expect(`${r.stdout}${r.stderr}`).not.toContain(canary.slice(0, 12));
}

function commandPaths(cmd: Command, prefix: string[] = []): string[][] {
  const out: string[][] = [];
  for (const sub of cmd.commands) {
    const path = [...prefix, sub.name()];
    out.push(path, ...commandPaths(sub, path));
  }
  return out;
}

function tmpFile(name: string, text: string, mode = 0o600): string {
  const file = join(mkdtempSync(join(tmpdir(), "leak-")), name);
  writeFileSync(file, text);
  chmodSync(file, mode);
  return file;
}

const helpPaths = [[], ...commandPaths(await buildProgram())];

describe("no secret in help", () => {
  const paths = helpPaths;
  it.each(paths.map((p) => [p.join(" ") || "(top)", p]))("%s --help", async (_name, path) => {
    const r = await runCli([...(path as string[]), "--help"], secretEnv);
    expect(r.code).toBe(0);
    expectNoCanary(r);
  });
});

describe("doctor", () => {
  it("applies run's URL rule before any request: plain http off-host is refused, exit 2", async () => {
    // .invalid never resolves; the refusal must come before any lookup or connection.
    const r = await runCli(["doctor", "--coordinator", "http://coordinator.example.invalid"], secretEnv);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/plain http:\/\/ to coordinator\.example\.invalid .*--allow-insecure-http/);
    expect(r.stdout).toBe("");
    expectNoCanary(r);
  });

  it("masks URL credentials in what it prints", async () => {
    const r = await runCli(["doctor", "--coordinator", `http://miner:${CANARY}@127.0.0.1:1`], secretEnv);
    expect(r.stdout).toContain("http://***@127.0.0.1:1");
    expectNoCanary(r);
  });
});

describe("run", () => {
  it.each([
    [`http://miner:${CANARY}@coordinator.example.invalid`, /--allow-insecure-http/],
    [`https://miner:${CANARY}@`, /--coordinator: must be an http/],
  ])("masks URL credentials in a refused --coordinator %#", async (url, message) => {
    const r = await runCli(["run", "--coordinator", url, "--models", modelsDir], secretEnv);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expectNoCanary(r);
  });

  it("never quotes a config file that is not JSON", async () => {
    for (const text of [
      CANARY,
      `{"apiKey": "${CANARY}" oops}`,
      `{"apiKey": "${CANARY}", "concurrency": "x"`,
    ]) {
      const r = await runCli(["run", "--config", tmpFile("c.json", text)], { AITBC_API_KEY: "" });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/is not valid JSON/);
      expectNoCanary(r);
    }
  });

  it("never quotes a signing key file that is not JSON", async () => {
    const stateDir = mkdtempSync(join(tmpdir(), "leak-state-"));
    writeFileSync(join(stateDir, "miner-key.json"), `${HEX_CANARY}\n`, { mode: 0o600 });
    const args = ["--coordinator", "http://127.0.0.1:1", "--models", modelsDir, "--state-dir", stateDir];
    const r = await runCli(["run", ...args], secretEnv);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/is not a valid key file/);
    expectNoCanary(r, HEX_CANARY);
    expectNoCanary(r);
  });

  it("reads --api-key-file, refuses it world-readable with chmod advice, never quotes it", async () => {
    const file = tmpFile("api-key", `${HEX_CANARY}\n`, 0o644);
    const r = await runCli(
      ["run", "--coordinator", "http://127.0.0.1:1", "--models", modelsDir, "--api-key-file", file],
      { AITBC_API_KEY: "" },
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`chmod 600 ${file}`);
    expectNoCanary(r, HEX_CANARY);
  });
});

describe("run logs", () => {
  it("never carry the key file's key or URL credentials", async () => {
    const stateDir = mkdtempSync(join(tmpdir(), "leak-state-"));
    const keyFile = tmpFile("api-key", `${CANARY}-file\n`);
    // Loopback port 1: connection refused, so the miner logs registration retries until stopped.
    const s = spawnCli(
      [
        "run",
        "--coordinator",
        `http://miner:${CANARY}@127.0.0.1:1`,
        "--api-key-file",
        keyFile,
        "--models",
        modelsDir,
        "--state-dir",
        stateDir,
        "--log-level",
        "trace",
      ],
      { AITBC_API_KEY: "" },
    );
    // A generous deadline: on a busy host the start (state, models, runtime) alone can take 20 s.
    const deadline = Date.now() + 90_000;
    while (!s.stderr().includes("register_retry") && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    s.child.kill("SIGTERM");
    await s.exit;
    expect(s.stderr()).toContain("register_retry");
    // The user name beside a password is not a secret and must not garble the log.
    expect(s.stderr()).toContain("/v1/miners/register");
    expectNoCanary({ stdout: s.stdout(), stderr: s.stderr() });
  });
});

describe("integer flags: plain decimal digits, a bad one exits 2", () => {
  it.each([
    [
      [
        "run",
        "--coordinator",
        "http://127.0.0.1:1",
        "--api-key",
        "k",
        "--models",
        modelsDir,
        "--concurrency",
        "0x10",
      ],
    ],
    [["demo", "--concurrency", "0x10"]],
    [["demo", "--jobs", " 3"]],
    [["coordinator", "--port", "1e3"]],
    [["coordinator", "--jobs", "0o7"]],
    [["bench", "--jobs", "0x10"]],
    [["bench", "--threads", "2.0"]],
    [["service", "--grace-period", "0x10"]],
  ])("%j", async (args) => {
    const r = await runCli(args, { AITBC_API_KEY: "", AITBC_COORDINATOR: "" });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/must be a whole number in \[\d+, \d+\]/);
    expect(r.stderr.trim().split("\n").length).toBeLessThanOrEqual(2);
  });
});

describe("service", () => {
  it("refuses an ExecStart inside npx's cache and shows the stable install", async () => {
    const r = await runCli([
      "service",
      "--bin",
      "/root/.npm/_npx/0a1b2c/node_modules/aitbc-native-miner/bin/aitbc-native-miner.js",
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("npm install -g aitbc-native-miner");
    expect(r.stdout).toBe("");
  });
});
