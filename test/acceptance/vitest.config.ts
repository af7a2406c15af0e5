import { defineConfig } from "vitest/config";

// Acceptance runs against outside systems (the real upstream coordinator): minutes long, never
// part of `npm test`. See each *.accept.ts header for what it needs.
export default defineConfig({
  test: {
    root: new URL("../..", import.meta.url).pathname,
    include: ["test/acceptance/**/*.accept.ts"],
    globalSetup: ["test/setup/global.ts"],
    testTimeout: 1_200_000,
    hookTimeout: 300_000,
    pool: "forks",
  },
});
