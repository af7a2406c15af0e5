// Factory: one CoordinatorClient per protocol behind the shared HTTP layer.
import type { Logger } from "../log.js";
import { AitbcClient } from "./aitbc.js";
import { ClaimClient } from "./claim.js";
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
  /** aitbc: price per unit sent with each result (metrics.unit_price); the claim dialect has no place for it. */
  unitPrice?: number | undefined;
}

export function createCoordinatorClient(opts: CoordinatorClientOptions): CoordinatorClient {
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
  if (opts.protocol === "claim") {
    const c = new ClaimClient({ ...opts, http, log });
    secrets = () => c.secrets();
    return c;
  }
  const c = new AitbcClient({ ...opts, http, log });
  secrets = () => c.secrets();
  return c;
}

export { CoordinatorError, type CoordinatorErrorKind } from "./errors.js";
export type * from "./types.js";
