import { defineConfig } from "vitest/config";

// Tests split by cost (node-llama-cpp's standalone vs modelDependent): `unit` is quick (pure logic,
// the addon on the fake NVML, in-process coordinators); `e2e` starts CLIs, loads models or runs
// the loop end to end. `npm run test:unit` runs the first alone; `npm test` runs both.
const E2E = [
  "test/e2e/**/*.test.ts",
  "test/fleet/**/*.test.ts",
  "test/bench/**/*.test.ts",
  "test/backends/{llama,llama-context,fallback,broken-model,real-shape,gpu-warmup,model-change}.test.ts",
  "test/gpu/{bundle,acceptance,inference-acceptance,health-process}.test.ts",
  "test/security/leaks.test.ts",
  "test/miner/state-dir.test.ts",
  "test/receipts/canonical-python.test.ts",
];

export default defineConfig({
  test: {
    globalSetup: ["test/setup/global.ts"],
    // Generous: no test's verdict rests on the wall clock, but a busy 2-core machine is slow.
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // 2-core CI: llama and child-process suites contend; keep a small pool.
    maxWorkers: 2,
    pool: "forks",
    projects: [
      { extends: true, test: { name: "unit", include: ["test/**/*.test.ts"], exclude: E2E } },
      { extends: true, test: { name: "e2e", include: E2E } },
    ],
  },
});
