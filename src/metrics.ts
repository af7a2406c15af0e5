// Prometheus text exposition of the miner's own counters (and, when given, GPU metrics), served on
// a loopback port by default. No client library: the format is small and the hot path allocation-free.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { MinerStats } from "./miner.js";

function esc(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

export function renderMinerMetrics(s: MinerStats, labels: Record<string, string>): string {
  const base = Object.entries(labels)
    .map(([k, v]) => `${k}="${esc(v)}"`)
    .join(",");
  const l = (extra = "") => `{${[base, extra].filter(Boolean).join(",")}}`;
  const out: string[] = [];
  const metric = (name: string, type: "counter" | "gauge", help: string, value: number) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name}${l()} ${value}`);
  };
  metric("aitbc_miner_jobs_completed_total", "counter", "Jobs computed by this miner.", s.completed);
  out.push("# HELP aitbc_miner_jobs_failed_total Jobs reported failed, by error code.");
  out.push("# TYPE aitbc_miner_jobs_failed_total counter");
  for (const [code, n] of Object.entries(s.failuresByCode)) {
    out.push(`aitbc_miner_jobs_failed_total${l(`code="${esc(code)}"`)} ${n}`);
  }
  metric(
    "aitbc_miner_results_submitted_total",
    "counter",
    "Results acknowledged by the coordinator.",
    s.submitted,
  );
  metric(
    "aitbc_miner_results_dropped_total",
    "counter",
    "Results the coordinator no longer wanted.",
    s.dropped,
  );
  metric("aitbc_miner_tokens_generated_total", "counter", "Completion tokens generated.", s.tokens);
  metric("aitbc_miner_prompt_tokens_total", "counter", "Prompt tokens processed.", s.promptTokens);
  metric(
    "aitbc_miner_busy_seconds_total",
    "counter",
    "Seconds spent generating.",
    Number(s.busySeconds.toFixed(3)),
  );
  metric("aitbc_miner_jobs_inflight", "gauge", "Jobs running now.", s.inflight);
  metric(
    "aitbc_miner_outbox_depth",
    "gauge",
    "Results waiting for the coordinator's acknowledgement.",
    s.pendingSubmissions,
  );
  metric(
    "aitbc_miner_state_writable",
    "gauge",
    "1 when the state directory takes writes; 0 stops new jobs until it does.",
    s.stateWritable ? 1 : 0,
  );
  return `${out.join("\n")}\n`;
}

export interface MetricsServer {
  url: string;
  close(): Promise<void>;
}

/** Serve GET /metrics; `render` is called per scrape. */
export async function startMetricsServer(
  host: string,
  port: number,
  render: () => Promise<string>,
): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    if (req.method !== "GET" || (req.url !== "/metrics" && req.url !== "/")) {
      res.writeHead(404).end();
      return;
    }
    render().then(
      (body) => {
        res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
        res.end(body);
      },
      (err: unknown) => {
        res.writeHead(500, { "content-type": "text/plain" });
        res.end(`# metrics failed: ${(err as Error).message}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${addr.port}/metrics`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
