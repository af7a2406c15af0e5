// Factory: the client of the dialect named by `protocol` (its row in the dialect table, src/coordinator/dialects.ts)
// behind the shared HTTP layer.
import type { Logger } from "../log.js";
import { dialect } from "./dialects.js";
import { HttpClient } from "./http.js";
import { minerSegment } from "./ids.js";
import type { CoordinatorClient, Protocol } from "./types.js";

export interface CoordinatorClientOptions {
  protocol: Protocol;
  baseUrl: string;
  apiKey?: string | undefined;
  bearerToken?: string | undefined;
  minerId: string;
  /** Deadline for the headers, then again for the whole body, of each request. */
  timeoutMs: number;
  /** Largest response body accepted (default 1 MiB). */
  maxBodyBytes?: number | undefined;
  log: Logger;
  region?: string | undefined;
  /** Price per unit sent with each result (metrics.unit_price) by a dialect whose traits say `priced`. */
  unitPrice?: number | undefined;
}

export function createCoordinatorClient(opts: CoordinatorClientOptions): CoordinatorClient {
  const d = dialect(opts.protocol);
  minerSegment(opts.minerId); // fail fast on an id that cannot go into a URL
  if (!Number.isFinite(opts.timeoutMs) || opts.timeoutMs <= 0) throw new TypeError("timeoutMs must be > 0");
  let secrets: () => string[] = () => [];
  const http = new HttpClient({
    baseUrl: opts.baseUrl,
    timeoutMs: opts.timeoutMs,
    maxBodyBytes: opts.maxBodyBytes,
    secrets: () => secrets(),
  });
  const log = opts.log.child({ component: "coordinator", protocol: opts.protocol });
  const c = d.create({ ...opts, http, log, dialect: d });
  secrets = () => c.secrets();
  return c;
}

export { CoordinatorError, type CoordinatorErrorKind } from "./errors.js";
export type * from "./types.js";
