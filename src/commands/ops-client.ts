// How the `status` and `gpu drain|undrain` commands reach a running host: its ops endpoint
// (--metrics-port of the `run` they talk to), on this host. Answers are validated before use.
import type { Command } from "commander";
import { envOf, fromEnv, RUN_SETTINGS } from "../settings.js";

export interface OpsTarget {
  metricsPort?: string;
  metricsHost?: string;
}

// The same flags and environment twins as the `run` they talk to (its settings table).
const PORT = RUN_SETTINGS.metricsPort;
const HOST = RUN_SETTINGS.metricsHost;

export function addOpsTarget(cmd: Command): Command {
  return cmd
    .option(`${PORT.flag} <${PORT.arg}>`, `the running miner's ${PORT.flag}; env ${envOf("metricsPort")}`)
    .option(
      `${HOST.flag} <${HOST.arg}>`,
      `its ${HOST.flag} (default: ${HOST.shownDefault}); env ${envOf("metricsHost")}`,
    );
}

export class OpsClientError extends Error {}

export function opsBase(o: OpsTarget, env: NodeJS.ProcessEnv = process.env): string {
  const raw = o.metricsPort ?? env[envOf("metricsPort")];
  if (raw === undefined)
    throw new OpsClientError(`which miner? give ${PORT.flag} (the port \`run\` serves /metrics on)`);
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65_535)
    throw new OpsClientError(`${PORT.flag}: "${raw}" is not a port (1-65535)`);
  const host = o.metricsHost ?? fromEnv("metricsHost", env);
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
