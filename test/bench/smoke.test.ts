// Smoke test of the benchmarks: each runs in its --smoke mode (--quick with one run per table), prints its table with the
// ratio column and writes one valid JSON results file. No timing is asserted: figures on a
// shared 2-core host are noise, and benchmarks are never pass/fail.
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const run = promisify(execFile);

describe("bench --quick", () => {
  for (const name of ["loop", "backlog", "passthrough", "http-hop", "footprint", "telemetry"]) {
    it(`${name}: prints its ratio and writes its results JSON`, { timeout: 240_000 }, async () => {
      const dir = mkdtempSync(join(tmpdir(), "bench-smoke-"));
      const { stdout } = await run(
        process.execPath,
        [join(root, "bench", "run.mjs"), "--smoke", "--only", name],
        {
          cwd: root,
          env: { ...process.env, BENCH_RESULTS_DIR: dir },
          timeout: 230_000,
          maxBuffer: 16 * 1024 * 1024,
        },
      );
      expect(stdout).toMatch(/ratio/);
      expect(stdout).toMatch(/\d+(\.\d+)?×/);
      const files = readdirSync(dir).filter((f) => f.startsWith(`${name}-`) && f.endsWith(".json"));
      expect(files).toHaveLength(1);
      const doc = JSON.parse(readFileSync(join(dir, files[0]!), "utf8")) as Record<string, unknown>;
      expect(doc["bench"]).toBe(name);
      expect(doc["quick"]).toBe(true);
      expect(doc["host"]).toMatchObject({ node: process.version });
    });
  }
});
