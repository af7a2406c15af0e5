import { defineConfig } from "vitest/config";

// Tests split by cost (node-llama-cpp's standalone vs modelDependent): `unit` is quick (pure logic,
// the addon on the fake NVML, in-process coordinators); `e2e` starts CLIs, loads models or runs
// the loop end to end. `npm run test:unit` runs the first alone; `npm test` runs both.
const E2E = [
  "test/e2e/**/*.test.ts",
  "test/fleet/**/*.test.ts",
  "test/backends/{llama,llama-context,fallback,broken-model,real-shape,gpu-warmup,model-change}.test.ts",
  "test/gpu/{bundle,acceptance,inference-acceptance,health-process}.test.ts",
  "test/security/leaks.test.ts",
  "test/miner/state-dir.test.ts",
  "test/receipts/canonical-python.test.ts",
];

// The benchmarks' smoke run (each bench in --smoke mode prints its table and writes its JSON):
// minutes of CPU that test no miner behaviour, so not in `npm test`; `npm run test:bench` and
// .ci/run run it.
const BENCH = ["test/bench/**/*.test.ts"];

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
      // Files of a project share their worker process (isolate: false): a fork and a fresh module
      // graph per file cost more than most tests (the unit project ran in 74 s isolated, 51 s not).
      // Each file cleans up after itself (servers, miners, mocks), as it must anyway.
      {
        extends: true,
        test: { name: "unit", include: ["test/**/*.test.ts"], exclude: [...E2E, ...BENCH], isolate: false },
      },
      { extends: true, test: { name: "e2e", include: E2E, isolate: false } },
      { extends: true, test: { name: "bench", include: BENCH } },
    ],
  },
});
