import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/setup/global.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // 2-core CI: llama and child-process suites contend; keep a small pool.
    maxWorkers: 2,
    pool: "forks",
  },
});
