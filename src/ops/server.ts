// The ops endpoints a fleet's tooling reads, on one port: /metrics (Prometheus, via prom-client),
// /healthz (the mining loop is alive: a kubelet restarts the pod when not) and /readyz (registered,
// a model servable, state writable). Health answers carry their reasons as JSON. Also GET /status
// (why no jobs: src/ops/status.ts) and, where the host has a GPU, POST /drain/ID, /undrain/ID (the
// operator's word on a card, from this host only: a drain stops mining, so no remote may ask).
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface HealthReport {
  live: boolean;
  ready: boolean;
  reasons: string[];
  /** Per worker, on a multi-GPU host. */
  workers?: Record<string, { live: boolean; ready: boolean; reasons: string[] }>;
  /** Drained workers (their card is sick, lost or drained by the operator), by miner id: why. */
  drained?: Record<string, string>;
}

/** What POST /drain/ID and /undrain/ID do (the supervisor's HostDrain); throws with a status. */
export type DrainControl = (
  action: "drain" | "undrain",
  id: string,
) => { minerId: string; message: string } | Promise<{ minerId: string; message: string }>;

export interface OpsSource {
  metrics(): Promise<string>;
  contentType: string;
  health(): HealthReport | Promise<HealthReport>;
  /** GET /status: what the host did in the last minutes and why no jobs, as JSON. */
  status?: () => unknown;
  control?: DrainControl;
}

export interface OpsServer {
  /** Base URL, e.g. http://127.0.0.1:9400 (the endpoints are /metrics, /healthz, /readyz). */
  url: string;
  port: number;
  close(): Promise<void>;
}

/** The paths served, for deployment manifests and their tests. */
export const OPS_PATHS = {
  metrics: "/metrics",
  live: "/healthz",
  ready: "/readyz",
  status: "/status",
} as const;

const CONTROL_PATH = /^\/(drain|undrain)\/([A-Za-z0-9._:-]{1,200})$/;

/** Only this host may drain its cards: 127.0.0.0/8 and ::1 (also as IPv4-mapped). */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const a = address.startsWith("::ffff:") ? address.slice(7) : address;
  return a === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a);
}

export async function startOpsServer(host: string, port: number, source: OpsSource): Promise<OpsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    const control = CONTROL_PATH.exec(path);
    if (control && req.method === "POST") {
      handleControl(
        source.control,
        control[1] as "drain" | "undrain",
        control[2]!,
        req.socket.remoteAddress,
        res,
      );
      return;
    }
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
    if (path === OPS_PATHS.status && source.status) {
      const status = source.status;
      Promise.resolve()
        .then(() => status())
        .then((v) => {
          res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" });
          res.end(`${JSON.stringify(v, null, 2)}\n`);
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

function handleControl(
  control: DrainControl | undefined,
  action: "drain" | "undrain",
  id: string,
  remote: string | undefined,
  res: ServerResponse,
): void {
  const answer = (status: number, body: Record<string, unknown>): void =>
    void res.writeHead(status, { "content-type": "application/json" }).end(`${JSON.stringify(body)}\n`);
  if (!isLoopback(remote)) {
    answer(403, { error: `${action} is accepted from this host only` });
    return;
  }
  if (!control) {
    answer(404, { error: "this miner has no GPU to drain (a CPU host or --gpus none)" });
    return;
  }
  Promise.resolve()
    .then(() => control(action, id))
    .then(
      (r) => answer(200, { ok: true, ...r }),
      (err: unknown) => {
        const status = (err as { status?: unknown }).status;
        answer(typeof status === "number" ? status : 500, { error: (err as Error).message });
      },
    );
}
