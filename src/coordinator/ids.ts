// Identifiers that end up in URL paths: validated before use, then percent-encoded.
import { CoordinatorError } from "./errors.js";

/** UUIDs, hex ids, slugs: letters, digits and . _ : @ ~ + = - (1–200 characters). */
export const JOB_ID_RE = /^[A-Za-z0-9._:@~+=-]{1,200}$/;
export const MINER_ID_RE = /^[A-Za-z0-9._:@-]{1,128}$/;

export function isValidJobId(id: unknown): id is string {
  return typeof id === "string" && JOB_ID_RE.test(id) && id !== "." && id !== "..";
}

export function isValidMinerId(id: unknown): id is string {
  return typeof id === "string" && MINER_ID_RE.test(id) && id !== "." && id !== "..";
}

/** The path segment for a job id we are about to send; a bad id is our bug, never retried. */
export function jobSegment(id: string): string {
  if (!isValidJobId(id)) {
    throw new CoordinatorError(
      "client",
      `refusing to use an invalid job id (${JSON.stringify(String(id).slice(0, 40))})`,
    );
  }
  return encodeURIComponent(id);
}

export function minerSegment(id: string): string {
  if (!isValidMinerId(id)) {
    throw new CoordinatorError(
      "client",
      `refusing to use an invalid miner id (${JSON.stringify(String(id).slice(0, 40))})`,
    );
  }
  return encodeURIComponent(id);
}
