// Vitest global setup: build everything the suites need from source, once per run.
// Each step is idempotent and cached under test/.fixtures/.
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export default async function setup(): Promise<void> {
  mkdirSync(join(root, "test", ".fixtures"), { recursive: true });
  // Child-process tests run the compiled CLI: keep dist/ in step with src/.
  // Type errors are reported by `npm run check`; tsc still emits, which is all the tests need.
  try {
    execFileSync(
      process.execPath,
      [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.build.json"],
      {
        cwd: root,
        stdio: "pipe",
      },
    );
  } catch {
    process.stderr.write(
      "global setup: tsc reported type errors (see npm run typecheck); dist/ was emitted anyway\n",
    );
  }
  const steps = await Promise.all([import("./tiny-model.js"), import("./fake-nvml.js")]);
  for (const step of steps) await step.default(root);
}
