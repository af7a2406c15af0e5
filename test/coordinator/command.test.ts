// `aitbc-native-miner coordinator`: the operator's smoke-test coordinator, run as a real process.
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { caps, client } from "../support/coordinator.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const PROGRAM = `
import { Command } from "commander";
import { register } from ${JSON.stringify(pathToFileURL(join(root, "dist", "commands", "coordinator.js")).href)};
const program = new Command();
register(program);
await program.parseAsync(process.argv.slice(1), { from: "user" });
`;

/** The command alone on a bare program (so the test depends on nothing else), as a real process. */
async function start(args: string[]) {
  const child = spawn(
    process.execPath,
    ["--input-type=module", "-e", PROGRAM, "--", "coordinator", "--port", "0", ...args],
    { stdio: ["ignore", "pipe", "pipe"], cwd: root },
  );
  const out = { stderr: "" };
  child.stderr.on("data", (d: Buffer) => {
    out.stderr += d.toString();
  });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).once("line", resolve);
    void exited.then((code) => reject(new Error(`exited ${code}: ${out.stderr}`)));
  });
  return { child, exited, url, out };
}

describe("coordinator command", () => {
  it("serves queued jobs until SIGTERM, then exits 0", async () => {
    const { child, exited, url, out } = await start([
      "--jobs",
      "2",
      "--model",
      "m1",
      "--prompt",
      "Hi",
      "--api-key",
      "smoke-key-123",
    ]);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const c = client(url, { apiKey: "smoke-key-123", minerId: "smoke" });
    try {
      await c.health();
      await c.register(caps(["m1"]), 1);
      const job = await c.poll(0);
      expect(job?.payload).toEqual({ type: "inference", model: "m1", prompt: "Hi" });
    } finally {
      await c.close();
    }
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(out.stderr).toContain('"event":"listening"');
    expect(out.stderr).toContain("coordinator assigned");
    expect(out.stderr).not.toContain("smoke-key-123");
  });

  it("--long-poll-max holds an empty poll that asks to wait; without it the poll is answered at once", async () => {
    for (const [args, held] of [
      [["--long-poll-max", "1"], true],
      [[], false],
    ] as const) {
      const { child, exited, url } = await start([...args]);
      const c = client(url, { minerId: "waiter" });
      try {
        await c.register(caps(["m1"]), 1);
        const t0 = performance.now();
        // Held: the 1 s allowed (a floor, which a busy machine only raises). Not held: asked to
        // wait 30 s, it answers long before, however slow the machine (no tight ceiling).
        expect(await c.poll(held ? 1 : 30)).toBeNull();
        const waited = performance.now() - t0;
        if (held) expect(waited).toBeGreaterThanOrEqual(900);
        else expect(waited).toBeLessThan(20_000);
      } finally {
        await c.close();
      }
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
    }
  });
});
