// Runs preflight-main.js in a child process (see there for why): the model loaded and evaluated a
// token, or it is broken (a one-line reason, the assert text when there is one), or the child ran
// out of time, which says nothing about the model (a slow disk, a busy host) and is reported apart.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The compiled entry point: next to this module in dist/, or dist/ itself when run from src/ (tests). */
export function preflightScript(): string | null {
  const candidates = [
    new URL("./preflight-main.js", import.meta.url),
    new URL("../../../dist/backends/llama/preflight-main.js", import.meta.url),
  ].map((u) => fileURLToPath(u));
  return candidates.find((p) => existsSync(p)) ?? null;
}

/** What one preflight found: loadable, broken (`reason`), or not known yet (the child timed out). */
export type PreflightResult = { ok: true } | { ok: false; timedOut: boolean; reason: string };

const PREFLIGHT_BASE_MS = 60_000;
const PREFLIGHT_MS_PER_GIB = 30_000;

/**
 * Time allowed for a preflight of a file of `sizeBytes`: 60 s plus 30 s per GiB (a cold read at
 * ~35 MB/s plus one CPU-evaluated token), so a 40 GiB model gets 21 minutes, the tiny one 60 s.
 */
export function preflightTimeoutMs(sizeBytes: number | null): number {
  const gib = Math.max(0, sizeBytes ?? 0) / 2 ** 30;
  return Math.round(PREFLIGHT_BASE_MS + PREFLIGHT_MS_PER_GIB * gib);
}

/** Load `path` in a child process and evaluate one token, within `timeoutMs`. */
export function runPreflight(path: string, timeoutMs: number): Promise<PreflightResult> {
  const script = preflightScript();
  if (!script) return Promise.resolve({ ok: true }); // nothing to run it with: trust the in-process load
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [script, path],
      { timeout: timeoutMs, maxBuffer: 1 << 20, killSignal: "SIGKILL", windowsHide: true },
      (err, _stdout, stderr) => {
        if (!err) return resolve({ ok: true });
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
        const detail = assertLine ?? lines.at(-1);
        resolve({
          ok: false,
          timedOut: err.killed === true && err.code !== "ERR_CHILD_PROCESS_STDIO_MAXBUFFER",
          reason: `preflight load ${how}${detail ? `: ${detail.slice(0, 300)}` : ""}`,
        });
      },
    );
  });
}

/** runPreflight as one value: null when the model loaded, else the reason (timeouts included). */
export async function preflightModel(path: string, timeoutMs = 120_000): Promise<string | null> {
  const r = await runPreflight(path, timeoutMs);
  return r.ok ? null : r.reason;
}
