// The ops endpoints a fleet's tooling reads, on one port: /metrics (Prometheus, via prom-client),
// /healthz (the mining loop is alive: a kubelet restarts the pod when not) and /readyz (registered,
// a model servable, state writable). Health answers carry their reasons as JSON.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface HealthReport {
  live: boolean;
  ready: boolean;
  reasons: string[];
  /** Per worker, on a multi-GPU host. */
  workers?: Record<string, { live: boolean; ready: boolean; reasons: string[] }>;
}

export interface OpsSource {
  metrics(): Promise<string>;
  contentType: string;
  health(): HealthReport | Promise<HealthReport>;
}

export interface OpsServer {
  /** Base URL, e.g. http://127.0.0.1:9400 (the endpoints are /metrics, /healthz, /readyz). */
  url: string;
  port: number;
  close(): Promise<void>;
}

/** The paths served, for deployment manifests and their tests. */
export const OPS_PATHS = { metrics: "/metrics", live: "/healthz", ready: "/readyz" } as const;

export async function startOpsServer(host: string, port: number, source: OpsSource): Promise<OpsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    const fail = (err: unknown) => {
      res.writeHead(500, { "content-type": "text/plain" });
      res.end(`# ${path} failed: ${(err as Error).message}\n`);
    };
    if (path === OPS_PATHS.metrics || path === "/") {
      source.metrics().then((body) => {
        res.writeHead(200, { "content-type": source.contentType });
        res.end(body);
      }, fail);
      return;
    }
    if (path === OPS_PATHS.live || path === OPS_PATHS.ready) {
      Promise.resolve(source.health()).then((h) => {
        const ok = path === OPS_PATHS.live ? h.live : h.ready;
        res.writeHead(ok ? 200 : 503, { "content-type": "application/json", "cache-control": "no-store" });
        res.end(`${JSON.stringify({ status: ok ? "ok" : "fail", ...h })}\n`);
      }, fail);
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${addr.port}`,
    port: addr.port,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
