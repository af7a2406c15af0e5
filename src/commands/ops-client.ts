// How the `status` and `gpu drain|undrain` commands reach a running host: its ops endpoint
// (--metrics-port of the `run` they talk to), on this host. Answers are validated before use.
import type { Command } from "commander";

export interface OpsTarget {
  metricsPort?: string;
  metricsHost?: string;
}

export function addOpsTarget(cmd: Command): Command {
  return cmd
    .option("--metrics-port <PORT>", "the running miner's --metrics-port; env AITBC_METRICS_PORT")
    .option("--metrics-host <HOST>", "its --metrics-host (default: 127.0.0.1); env AITBC_METRICS_HOST");
}

export class OpsClientError extends Error {}

export function opsBase(o: OpsTarget, env: NodeJS.ProcessEnv = process.env): string {
  const raw = o.metricsPort ?? env["AITBC_METRICS_PORT"];
  if (raw === undefined)
    throw new OpsClientError("which miner? give --metrics-port (the port `run` serves /metrics on)");
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65_535)
    throw new OpsClientError(`--metrics-port: "${raw}" is not a port (1-65535)`);
  const host = o.metricsHost ?? env["AITBC_METRICS_HOST"] ?? "127.0.0.1";
  return `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** One request to the ops endpoint: its status and JSON body (an object), or a clear error. */
export async function opsRequest(
  url: string,
  method: "GET" | "POST",
): Promise<{ status: number; body: Record<string, unknown> }> {
  let res: Response;
  try {
    res = await fetch(url, { method, signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    throw new OpsClientError(
      `no miner answers at ${new URL(url).origin} (${(err as Error).message}): is \`run\` started with this --metrics-port?`,
    );
  }
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  if (typeof body !== "object" || body === null || Array.isArray(body))
    throw new OpsClientError(
      `${url} answered HTTP ${res.status} without a JSON object: is this the miner's port?`,
    );
  return { status: res.status, body: body as Record<string, unknown> };
}
