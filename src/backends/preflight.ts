// Runs preflight-main.js in a child process (see there for why). Resolves with null when the
// model loaded and evaluated a token, else with a one-line reason (the assert text when there is one).
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The compiled entry point: next to this module in dist/, or dist/ itself when run from src/ (tests). */
export function preflightScript(): string | null {
  const candidates = [
    new URL("./preflight-main.js", import.meta.url),
    new URL("../../dist/backends/preflight-main.js", import.meta.url),
  ].map((u) => fileURLToPath(u));
  return candidates.find((p) => existsSync(p)) ?? null;
}

export function preflightModel(path: string, timeoutMs = 120_000): Promise<string | null> {
  const script = preflightScript();
  if (!script) return Promise.resolve(null); // nothing to run it with: trust the in-process load
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [script, path],
      { timeout: timeoutMs, maxBuffer: 1 << 20, killSignal: "SIGKILL", windowsHide: true },
      (err, _stdout, stderr) => {
        if (!err) return resolve(null);
        const lines = String(stderr)
          .split("\n")
          .map((l) => l.trim())
          .filter(Boolean);
        const assertLine = lines.find((l) => l.includes("GGML_ASSERT") || l.includes("error"));
        const how = err.killed
          ? `timed out after ${timeoutMs} ms`
          : err.signal
            ? `crashed (${err.signal})`
            : `exit ${String(err.code)}`;
        resolve(
          `preflight load ${how}${assertLine || lines.at(-1) ? `: ${(assertLine ?? lines.at(-1))!.slice(0, 300)}` : ""}`,
        );
      },
    );
  });
}
