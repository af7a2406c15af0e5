// Runs preflight-main.js in a child process (see there for why): the model loaded and evaluated a
// token, or it is broken (a one-line reason, the assert text when there is one), or the child ran
// out of time, which says nothing about the model (a slow disk, a busy host) and is reported apart.
// While it runs, its progress (its own lines, and the kernel's counters of its work) is passed on,
// so a long preflight that moves is told from a stuck one (/healthz).
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseProgressLine } from "./preflight-protocol.js";
import { workDone } from "./proc-progress.js";

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

/** A sign the child moved: a step it reported (phase, fraction), or only its counters (nulls). */
export type PreflightProgress = (fraction: number | null, phase: string | null) => void;

const PREFLIGHT_BASE_MS = 60_000;
const PREFLIGHT_MS_PER_GIB = 30_000;
/** What the child may print (stderr, and one stdout line) before it is taken as broken. */
const MAX_OUTPUT = 1 << 20;
/** How often the child's counters are read while it runs. */
const SAMPLE_MS = 1000;

/**
 * Time allowed for a preflight of a file of `sizeBytes`: 60 s plus 30 s per GiB (a cold read at
 * ~35 MB/s plus one CPU-evaluated token), so a 40 GiB model gets 21 minutes, the tiny one 60 s.
 */
export function preflightTimeoutMs(sizeBytes: number | null): number {
  const gib = Math.max(0, sizeBytes ?? 0) / 2 ** 30;
  return Math.round(PREFLIGHT_BASE_MS + PREFLIGHT_MS_PER_GIB * gib);
}

/**
 * Load `path` in a child process and evaluate one token, within `timeoutMs`. With `gpu`, on the GPU
 * runtime with every layer offloaded (the GPU warm-up, gpu-warmup.ts).
 */
export function runPreflight(
  path: string,
  timeoutMs: number,
  onProgress?: PreflightProgress,
  o: { gpu?: boolean } = {},
): Promise<PreflightResult> {
  const script = preflightScript();
  if (!script) return Promise.resolve({ ok: true }); // nothing to run it with: trust the in-process load
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, path, ...(o.gpu ? ["--gpu"] : [])], {
      stdio: ["ignore", "pipe", "pipe"],
      windowsHide: true,
    });
    let stderr = "";
    let pending = "";
    let killed: "timeout" | "output" | null = null;
    const kill = (why: "timeout" | "output") => {
      killed ??= why;
      child.kill("SIGKILL");
    };
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      pending += d;
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      if (pending.length > MAX_OUTPUT) kill("output");
      for (const line of lines) {
        const step = parseProgressLine(line);
        if (step) onProgress?.(step.fraction, step.phase);
      }
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
      if (stderr.length > MAX_OUTPUT) kill("output");
    });
    const timer = setTimeout(() => kill("timeout"), timeoutMs);
    let work = workDone(child.pid);
    const sampler = onProgress
      ? setInterval(() => {
          const now = workDone(child.pid);
          if (now !== null && work !== null && now !== work) onProgress(null, null);
          work = now ?? work;
        }, SAMPLE_MS)
      : null;
    let settled = false;
    const settle = (r: PreflightResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (sampler) clearInterval(sampler);
      resolve(r);
    };
    child.on("error", (err) =>
      settle({ ok: false, timedOut: false, reason: `preflight could not start: ${err.message}` }),
    );
    child.on("close", (code, signal) => {
      if (code === 0 && killed === null) return settle({ ok: true });
      const lines = stderr
        .split("\n")
        .map((l) => l.trim())
        .filter(Boolean);
      const assertLine = lines.find((l) => l.includes("GGML_ASSERT") || l.includes("error"));
      const how =
        killed === "timeout"
          ? `timed out after ${timeoutMs} ms`
          : killed === "output"
            ? `printed over ${MAX_OUTPUT} bytes`
            : signal
              ? `crashed (${signal})`
              : `exit ${String(code)}`;
      const detail = assertLine ?? lines.at(-1);
      settle({
        ok: false,
        timedOut: killed === "timeout",
        reason: `preflight load ${how}${detail ? `: ${detail.slice(0, 300)}` : ""}`,
      });
    });
  });
}

/** runPreflight as one value: null when the model loaded, else the reason (timeouts included). */
export async function preflightModel(path: string, timeoutMs = 120_000): Promise<string | null> {
  const r = await runPreflight(path, timeoutMs);
  return r.ok ? null : r.reason;
}
