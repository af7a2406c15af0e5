// HTTP layer shared by both coordinator dialects: one undici Agent per client, per-request
// deadlines for headers and for the whole body, a cap on response size, and a mapping of every
// failure to a CoordinatorError kind. Messages carry method, path and status, never a secret.
import { Agent } from "undici";
import type { z } from "zod";
import { CoordinatorError, type CoordinatorErrorKind } from "./errors.js";
import { ExchangeFault, exchange, type RawAnswer } from "./response-reader.js";

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

export interface HttpOptions {
  baseUrl: string;
  timeoutMs: number;
  maxBodyBytes?: number | undefined;
  /** Strings that must never appear in an error message (API key, tokens). */
  secrets?: () => Iterable<string>;
}

export interface HttpRequest {
  method: "GET" | "POST" | "DELETE";
  /** Path relative to the base URL, starting with "/", segments already encoded. */
  path: string;
  headers?: Record<string, string>;
  json?: unknown;
  /**
   * Aborts the request while it waits for the server's answer (e.g. SIGTERM during a held poll):
   * rejected as kind "aborted". An answer whose headers arrived is still read to the end.
   */
  signal?: AbortSignal | undefined;
  /** This request's deadline instead of the client's (shorter at shutdown, longer for a long-poll). */
  timeoutMs?: number | undefined;
  /**
   * On an answer over the size cap, keep its first bytes on the error (`bodyHead`): a poll answer
   * too large to accept still names the job that was handed over, so it can be failed back.
   */
  keepHeadOnOverflow?: boolean | undefined;
}

/** How much of an oversized answer is kept for `keepHeadOnOverflow`. */
export const OVERFLOW_HEAD_BYTES = 64 * 1024;

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** The longest wait a server may impose through Retry-After: past it the usual backoff cap rules. */
export const MAX_RETRY_AFTER_MS = 10 * 60_000;

/**
 * Parse Retry-After (delta seconds or an HTTP date) into milliseconds from now, capped. A date is
 * measured against the answer's own Date header when it has one (both the server's clock), so our
 * wall clock being off, or stepping, does not stretch or cut the wait.
 */
export function parseRetryAfter(
  value: string | string[] | undefined,
  dateHeader?: string | string[] | undefined,
  now = Date.now(),
): number | null {
  const raw = Array.isArray(value) ? value[0] : value;
  if (raw === undefined) return null;
  const v = raw.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Math.min(MAX_RETRY_AFTER_MS, Math.round(Number(v) * 1000));
  const at = Date.parse(v);
  if (Number.isNaN(at)) return null;
  const serverNow = Date.parse((Array.isArray(dateHeader) ? dateHeader[0] : dateHeader) ?? "");
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, at - (Number.isNaN(serverNow) ? now : serverNow)));
}

const TIMEOUT_CODES = new Set([
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "UND_ERR_CONNECT_TIMEOUT",
  "ETIMEDOUT",
]);

/** The first error code found on an error, its cause chain or an AggregateError's members. */
function errorCode(err: unknown, depth = 0): string | null {
  if (depth > 4 || typeof err !== "object" || err === null) return null;
  const e = err as { code?: unknown; cause?: unknown; errors?: unknown };
  if (typeof e.code === "string" && e.code !== "UND_ERR") return e.code;
  if (Array.isArray(e.errors)) {
    for (const inner of e.errors) {
      const c = errorCode(inner, depth + 1);
      if (c) return c;
    }
  }
  return errorCode(e.cause, depth + 1);
}

function statusKind(status: number): CoordinatorErrorKind {
  if (status === 401 || status === 403) return "auth";
  if (status === 404) return "not_found";
  if (status === 409) return "conflict";
  if (status === 429) return "rate_limited";
  if (status >= 500) return "server";
  // A redirect is not an answer the API gives: treat it like a malformed one (retried, result kept).
  if (status < 400) return "bad_response";
  return "client";
}

export class HttpClient {
  private readonly agent: Agent;
  private readonly base: URL;
  /** Path prefix of the base URL without a trailing slash ("" for the root). */
  private readonly prefix: string;
  private readonly maxBodyBytes: number;

  constructor(private readonly opts: HttpOptions) {
    const base = new URL(opts.baseUrl);
    if (base.protocol !== "http:" && base.protocol !== "https:") {
      throw new TypeError("coordinator URL must be http:// or https://");
    }
    // Keep a path prefix (e.g. https://host/api) and drop query/fragment/credentials.
    base.search = "";
    base.hash = "";
    base.username = "";
    base.password = "";
    this.base = base;
    this.prefix = base.pathname.replace(/\/+$/, "");
    this.maxBodyBytes = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.agent = new Agent({
      connections: 16,
      keepAliveTimeout: 10_000,
      connect: { timeout: opts.timeoutMs },
    });
  }

  /** The deadline of a request that sets none. */
  get timeoutMs(): number {
    return this.opts.timeoutMs;
  }

  /** Remove every registered secret from a text before it goes into an error. */
  scrub(text: string): string {
    let out = text;
    for (const s of this.opts.secrets?.() ?? []) {
      if (s.length > 0 && out.includes(s)) out = out.split(s).join("[REDACTED]");
    }
    return out;
  }

  /** Send a request; resolve with any HTTP status (the caller decides), reject on transport faults. */
  async send(req: HttpRequest): Promise<HttpResponse> {
    const where = `${req.method} ${req.path.split("?")[0]}`;
    const timeoutMs = req.timeoutMs ?? this.opts.timeoutMs;
    if (req.signal?.aborted) throw new CoordinatorError("aborted", `${where}: aborted before it was sent`);
    const headers: Record<string, string> = { accept: "application/json", ...req.headers };
    let body: string | undefined;
    if (req.json !== undefined) {
      body = JSON.stringify(req.json);
      headers["content-type"] = "application/json";
    }
    let answer: RawAnswer;
    try {
      answer = await exchange(this.agent, {
        origin: this.base.origin,
        path: `${this.prefix}${req.path}`,
        method: req.method,
        headers,
        body,
        timeoutMs,
        maxBodyBytes: this.maxBodyBytes,
        headBytes: req.keepHeadOnOverflow ? OVERFLOW_HEAD_BYTES : 0,
        signal: req.signal,
      });
    } catch (err) {
      throw this.transportError(where, timeoutMs, err);
    }
    if (answer.overflow) {
      const declared =
        answer.declared !== null && answer.declared > this.maxBodyBytes ? answer.declared : null;
      throw new CoordinatorError(
        "bad_response",
        `${where}: response body${declared !== null ? ` of ${declared} bytes` : ""} exceeds the ${this.maxBodyBytes}-byte limit`,
        answer.status,
        null,
        { bodyHead: req.keepHeadOnOverflow ? answer.body.toString("utf8") : undefined },
      );
    }
    return { status: answer.status, headers: answer.headers, text: answer.body.toString("utf8") };
  }

  /** What a failed exchange means to the loop: aborted, timed out, or a network fault. */
  private transportError(where: string, timeoutMs: number, err: unknown): CoordinatorError {
    const fault = err instanceof ExchangeFault ? err : new ExchangeFault("transport", "headers", err);
    if (fault.why === "aborted") {
      return new CoordinatorError("aborted", `${where}: aborted`, null, null, { cause: fault.cause });
    }
    const code = errorCode(fault.cause);
    if (fault.why === "deadline" || (code !== null && TIMEOUT_CODES.has(code))) {
      return new CoordinatorError(
        "timeout",
        `${where}: no complete ${fault.phase} within ${timeoutMs} ms`,
        null,
        null,
        { cause: fault.cause },
      );
    }
    const cause = fault.cause;
    const detail = code ?? (cause instanceof Error ? this.scrub(cause.message) : "unknown error");
    // Everything else below HTTP (refused, reset, DNS, TLS, closed socket) is "network".
    return new CoordinatorError("network", `${where}: ${this.describe(code)} (${detail})`, null, null, {
      cause,
    });
  }

  private describe(code: string | null): string {
    switch (code) {
      case "ECONNREFUSED":
        return "connection refused";
      case "ECONNRESET":
      case "UND_ERR_SOCKET":
        return "connection reset";
      case "ENOTFOUND":
      case "EAI_AGAIN":
        return "host not found";
      default:
        return "network error";
    }
  }

  /** Turn a non-2xx answer into the CoordinatorError the loop acts on. */
  statusError(req: HttpRequest, res: HttpResponse): CoordinatorError {
    const where = `${req.method} ${req.path.split("?")[0]}`;
    const kind = statusKind(res.status);
    const retryAfterMs =
      res.status === 429 || res.status === 503
        ? parseRetryAfter(res.headers["retry-after"], res.headers["date"])
        : null;
    const snippet = this.scrub(res.text.replace(/\s+/g, " ").trim().slice(0, 200));
    const msg = `${where}: HTTP ${res.status}${snippet ? ` ${snippet}` : ""}`;
    return new CoordinatorError(kind, msg, res.status, retryAfterMs);
  }

  /** Parse and validate a JSON answer. */
  parse<T>(req: HttpRequest, res: HttpResponse, schema: z.ZodType<T>): T {
    const where = `${req.method} ${req.path.split("?")[0]}`;
    let value: unknown;
    try {
      value = JSON.parse(res.text);
    } catch {
      throw new CoordinatorError(
        "bad_response",
        `${where}: HTTP ${res.status} answer is not valid JSON`,
        res.status,
      );
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const at = issue ? `${issue.path.join(".") || "(root)"}: ${issue.message}` : "wrong shape";
      throw new CoordinatorError(
        "bad_response",
        `${where}: HTTP ${res.status} answer has an unexpected shape (${this.scrub(at)})`,
        res.status,
      );
    }
    return parsed.data;
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}
