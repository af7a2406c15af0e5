// The local coordinator as a child process that a test can SIGKILL and restart on the same port,
// keeping its job table in a state file.
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { LocalJob } from "../../src/local-coordinator/index.js";
import { API_KEY, repoRoot } from "./harness.js";

export interface CoordinatorProcess {
  url: string;
  port: number;
  child: ChildProcess;
  kill(): Promise<void>;
}

const entry = join(repoRoot, "dist", "local-coordinator", "main.js");

export async function startCoordinatorProcess(opts: {
  port: number;
  stateFile: string;
  faults?: Record<string, unknown>;
  leaseMs?: number;
  /** Run as the real upstream coordinator behaves (`--upstream-quirks`, docs/protocols.md#how-the-upstream-coordinator-behaves). */
  upstreamQuirks?: boolean;
}): Promise<CoordinatorProcess> {
  const args = [
    entry,
    "--port",
    String(opts.port),
    "--state-file",
    opts.stateFile,
    "--api-key",
    API_KEY,
    "--rate-limits",
    JSON.stringify({ register: 100_000, heartbeat: 100_000, poll: 1_000_000, result: 100_000 }),
    "--log-level",
    "error",
  ];
  if (opts.faults) args.push("--faults", JSON.stringify(opts.faults));
  if (opts.leaseMs !== undefined) args.push("--lease-ms", String(opts.leaseMs));
  if (opts.upstreamQuirks) args.push("--upstream-quirks");
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise<string>((resolve, reject) => {
    let buf = "";
    child.stdout!.on("data", (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf("\n");
      if (nl >= 0) resolve(buf.slice(0, nl));
    });
    child.on("exit", (code) => reject(new Error(`coordinator exited early (${code})`)));
  });
  const { url, port } = JSON.parse(line) as { url: string; port: number };
  return {
    url,
    port,
    child,
    kill: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGKILL");
      }),
  };
}

async function admin<T>(url: string, path: string, body?: unknown): Promise<T> {
  const r = await fetch(`${url}/_admin/${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { "content-type": "application/json", "x-api-key": API_KEY },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`admin ${path}: HTTP ${r.status}`);
  return (await r.json()) as T;
}

export async function enqueue(url: string, payload: Record<string, unknown>): Promise<string> {
  const r = await admin<{ jobId?: string; job_id?: string }>(url, "jobs", { payload });
  return (r.jobId ?? r.job_id)!;
}

export async function listJobs(url: string): Promise<LocalJob[]> {
  const r = await admin<LocalJob[] | { jobs: LocalJob[] }>(url, "jobs");
  return Array.isArray(r) ? r : r.jobs;
}

export async function stats(url: string): Promise<Record<string, unknown>> {
  return admin(url, "stats");
}

export function rssKb(pid: number): number {
  // VmRSS of a live process, in kB (Linux).
  const text = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /VmRSS:\s+(\d+) kB/.exec(text);
  return m ? Number(m[1]) : Number.NaN;
}
