// A loopback HTTP proxy in front of the local coordinator that injects faults by rule:
// answer 429/5xx for the first N requests of a route, or hold an answer past the client timeout.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface ProxyRule {
  /** e.g. "POST /v1/miners/poll" (a prefix) or a pattern */
  route: string | RegExp;
  times: number;
  status?: number;
  headers?: Record<string, string>;
  delayMs?: number;
}

export interface FaultProxy {
  url: string;
  port: number;
  injected: Record<string, number>;
  /** The most requests of each route ("POST /v1/miners/poll") that were in flight at once. */
  peak: Record<string, number>;
  /** Stop injecting: every later request passes through. */
  clear(): void;
  close(): Promise<void>;
}

export interface ProxyOptions {
  /** Response headers the proxy drops on the way back (e.g. `retry-after`: a 429 that says nothing). */
  dropResponseHeaders?: string[];
}

export async function startFaultProxy(
  target: string,
  rules: ProxyRule[],
  port = 0,
  opts: ProxyOptions = {},
): Promise<FaultProxy> {
  const dropped = new Set(["content-length", "transfer-encoding", "connection", "keep-alive"]);
  for (const h of opts.dropResponseHeaders ?? []) dropped.add(h.toLowerCase());
  const left = rules.map((r) => ({ ...r }));
  const injected: Record<string, number> = {};
  const peak: Record<string, number> = {};
  const inFlight: Record<string, number> = {};
  const server: Server = createServer(async (req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    const route = `${req.method} ${path}`;
    inFlight[route] = (inFlight[route] ?? 0) + 1;
    peak[route] = Math.max(peak[route] ?? 0, inFlight[route]!);
    res.on("close", () => {
      inFlight[route]!--;
    });
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const rule = left.find(
      (r) => r.times > 0 && (typeof r.route === "string" ? route.startsWith(r.route) : r.route.test(route)),
    );
    if (rule) {
      rule.times--;
      const kind = rule.status ? `${rule.status}` : "slow";
      injected[kind] = (injected[kind] ?? 0) + 1;
      if (rule.delayMs) await new Promise((r) => setTimeout(r, rule.delayMs));
      if (rule.status) {
        res.writeHead(rule.status, { "content-type": "application/json", ...rule.headers });
        res.end(JSON.stringify({ detail: "injected" }));
        return;
      }
    }
    try {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) {
        if (typeof v === "string" && !["host", "connection", "content-length"].includes(k)) headers[k] = v;
      }
      const body = chunks.length > 0 ? Buffer.concat(chunks) : undefined;
      const r = await fetch(`${target}${req.url}`, { method: req.method ?? "GET", headers, body });
      const text = Buffer.from(await r.arrayBuffer());
      const out: Record<string, string> = {};
      r.headers.forEach((v, k) => {
        if (!dropped.has(k)) out[k] = v;
      });
      if (!res.destroyed) {
        res.writeHead(r.status, out);
        res.end(text);
      }
    } catch {
      if (!res.destroyed) res.destroy();
    }
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${actual}`,
    port: actual,
    injected,
    peak,
    clear: () => {
      for (const r of left) r.times = 0;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A port that nothing listens on right now. */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}
