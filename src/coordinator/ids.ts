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

/** Longest id we will still put in a path to fail a job back (ids are the coordinator's, not ours). */
const MAX_REPORTED_ID_CHARS = 1024;

/**
 * The path segment for a job id we are about to send. An id that fails validation was still
 * handed over by the coordinator and must be failed back, so it is percent-encoded in full (dots
 * too, so `..` can never act as a path step); only an empty or absurdly long one is refused.
 */
export function jobSegment(id: string): string {
  if (isValidJobId(id)) return encodeURIComponent(id);
  const text = String(id as unknown);
  if (typeof id !== "string" || text.length === 0 || text.length > MAX_REPORTED_ID_CHARS) {
    throw new CoordinatorError(
      "client",
      `refusing to use an invalid job id (${JSON.stringify(String(id).slice(0, 40))})`,
    );
  }
  return encodeURIComponent(text).replace(/\./g, "%2E");
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
