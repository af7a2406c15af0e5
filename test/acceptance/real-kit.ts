// Shared pieces of the acceptance runs against the REAL upstream coordinator, started on
// loopback by the shared aitbc-real kit (AITBC_REAL=<kit dir>): start it, a client token, a
// counting pass-through in front of it, and waits with a deadline.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { freePort } from "../support/proxy.js";

export const kit = process.env["AITBC_REAL"];
export const MINER_KEY = "miner-key-0123456789abcdef"; // the kit's env.sh MINER_API_KEYS

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | null> | T | null,
  ms: number,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== null) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

export interface RealCoordinator {
  url: string;
  /** Its receipt-signing public key (hex). */
  key: string;
  /** A client bearer token minted with upstream's own code. */
  token: string;
  child: ChildProcess;
}

/** The real coordinator on a fresh database under `dir`. */
export async function startRealCoordinator(dir: string): Promise<RealCoordinator> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env = { ...process.env, FRESH_DB: "1", AITBC_HOME: join(dir, "coordinator") };
  let out = "";
  const child = spawn("bash", [join(kit!, "run-real-coordinator.sh"), String(port)], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const key = await waitFor(
    "the coordinator's receipt key",
    () => /receipt signing public key \(hex\): ([0-9a-f]{64})/.exec(out)?.[1] ?? null,
    120_000,
  );
  await waitFor(
    "the coordinator's /health",
    async () => ((await fetch(`${url}/health`).catch(() => null))?.ok ? true : null),
    120_000,
  );
  const token = execFileSync("bash", [join(kit!, "client.sh"), String(port), "token"], {
    encoding: "utf8",
    env,
  }).trim();
  return { url, key, token, child };
}

export interface PollSeen {
  at: number;
  miner: string;
  status: number;
  job?: string;
}

export interface CountingProxy {
  url: string;
  /** "METHOD /route STATUS" → answers (job ids in result/fail routes folded to {job}). */
  counts: Map<string, number>;
  /** job id → when the poll answer that handed it over passed through. */
  handedOut: Map<string, number>;
  /** Every poll: when its answer passed, from which worker, what it brought. */
  polls: PollSeen[];
  /** Job ids a result or failure was sent for, in order. */
  verdicts: string[];
  close(): void;
}

/**
 * A pass-through in front of the coordinator that counts answers by route and status: upstream
 * writes no access log here. Loopback both sides, so upstream still sees one client IP.
 */
export async function countingProxy(target: string): Promise<CountingProxy> {
  const counts = new Map<string, number>();
  const handedOut = new Map<string, number>();
  const polls: PollSeen[] = [];
  const verdicts: string[] = [];
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers))
      if (typeof v === "string" && !["host", "connection", "content-length"].includes(k)) headers[k] = v;
    const path = (req.url ?? "/").split("?")[0]!;
    const verdict = /^\/v1\/miners\/([^/]+)\/(result|fail)$/.exec(path);
    if (req.method === "POST" && verdict) verdicts.push(decodeURIComponent(verdict[1]!));
    try {
      const r = await fetch(`${target}${req.url}`, {
        method: req.method ?? "GET",
        headers,
        body: chunks.length > 0 ? Buffer.concat(chunks) : undefined,
      });
      const body = Buffer.from(await r.arrayBuffer());
      const route = verdict ? `/v1/miners/{job}/${verdict[2]}` : path;
      const key = `${req.method} ${route} ${r.status}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
      if (route === "/v1/miners/poll") {
        const miner = String(req.headers["x-miner-id"] ?? "?");
        const id =
          r.status === 200 ? (JSON.parse(body.toString("utf8")) as { job_id?: unknown }).job_id : undefined;
        if (typeof id === "string") handedOut.set(id, Date.now());
        polls.push({
          at: Date.now(),
          miner,
          status: r.status,
          ...(typeof id === "string" ? { job: id } : {}),
        });
      }
      const out: Record<string, string> = {};
      r.headers.forEach((v, k) => {
        if (
          !["content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"].includes(k)
        )
          out[k] = v;
      });
      res.writeHead(r.status, out);
      res.end(body);
    } catch {
      res.destroy();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    counts,
    handedOut,
    polls,
    verdicts,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** Stop what a run started: the miner (waiting for its exit), the pass-through, the coordinator. */
export async function stopAll(
  host: { child: ChildProcess; exit: Promise<unknown> } | null,
  proxy: CountingProxy | null,
  co: RealCoordinator | null,
): Promise<void> {
  if (host && host.child.exitCode === null) {
    host.child.kill("SIGTERM");
    await host.exit;
  }
  proxy?.close();
  co?.child.kill("SIGTERM");
}

/** The miner's JSON log lines (it logs to stderr; stdout is for command output). */
export function logLines(host: { stdout(): string; stderr(): string }): Record<string, unknown>[] {
  return `${host.stdout()}\n${host.stderr()}`
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** A client's call to the coordinator (bearer token). */
export function clientCall(
  c: RealCoordinator,
  method: string,
  path: string,
  body?: unknown,
): Promise<Response> {
  return fetch(`${c.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${c.token}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(30_000),
  });
}
