// HTTP layer shared by both coordinator dialects: one undici Agent per client, per-request
// deadlines for headers and for the whole body, a cap on response size, and a mapping of every
// failure to a CoordinatorError kind. Messages carry method, path and status, never a secret.
import { Agent, request } from "undici";
import type { z } from "zod";
import { CoordinatorError, type CoordinatorErrorKind } from "./errors.js";

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

/** Parse Retry-After (delta seconds or an HTTP date) into milliseconds from now, capped. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | null {
  const raw = Array.isArray(value) ? value[0] : value;
  if (raw === undefined) return null;
  const v = raw.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Math.min(MAX_RETRY_AFTER_MS, Math.round(Number(v) * 1000));
  const at = Date.parse(v);
  if (Number.isNaN(at)) return null;
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, at - now));
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

/** Drop a response body we will not read; undici reports the abort as an error event. */
function discard(body: NodeJS.ReadableStream & { destroy(): void }): void {
  body.on("error", () => {});
  body.destroy();
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

  private url(path: string): string {
    return `${this.base.origin}${this.prefix}${path}`;
  }

  /** Send a request; resolve with any HTTP status (the caller decides), reject on transport faults. */
  async send(req: HttpRequest): Promise<HttpResponse> {
    const where = `${req.method} ${req.path.split("?")[0]}`;
    const timeoutMs = req.timeoutMs ?? this.opts.timeoutMs;
    if (req.signal?.aborted) throw new CoordinatorError("aborted", `${where}: aborted before it was sent`);
    const controller = new AbortController();
    const onCallerAbort = () => controller.abort(new Error("aborted by caller"));
    req.signal?.addEventListener("abort", onCallerAbort, { once: true });
    let timedOut = false;
    let phase = "headers";
    const arm = () =>
      setTimeout(() => {
        timedOut = true;
        controller.abort(new Error("deadline"));
      }, timeoutMs);
    let timer = arm();
    const headers: Record<string, string> = { accept: "application/json", ...req.headers };
    let body: string | undefined;
    if (req.json !== undefined) {
      body = JSON.stringify(req.json);
      headers["content-type"] = "application/json";
    }
    try {
      const res = await request(this.url(req.path), {
        dispatcher: this.agent,
        method: req.method,
        headers,
        body,
        signal: controller.signal,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      // An answer already arriving is read to the end (a poll's job is ours once sent): the
      // caller's abort only cuts a request still waiting for the server.
      req.signal?.removeEventListener("abort", onCallerAbort);
      // A fresh deadline for the whole body: undici's bodyTimeout is per chunk, which a server
      // dribbling one byte at a time (slowloris) never trips.
      clearTimeout(timer);
      timer = arm();
      phase = "body";
      const declared = Number(res.headers["content-length"]);
      const declaredTooLarge = Number.isFinite(declared) && declared > this.maxBodyBytes;
      const tooLarge = (head: string | undefined) =>
        new CoordinatorError(
          "bad_response",
          `${where}: response body${declaredTooLarge ? ` of ${declared} bytes` : ""} exceeds the ${this.maxBodyBytes}-byte limit`,
          res.statusCode,
          null,
          { bodyHead: head },
        );
      if (declaredTooLarge && !req.keepHeadOnOverflow) {
        discard(res.body);
        throw tooLarge(undefined);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      let over = declaredTooLarge;
      for await (const chunk of res.body) {
        const buf = chunk as Buffer;
        size += buf.length;
        chunks.push(buf);
        if (size > this.maxBodyBytes) over = true;
        // Past the cap, read on only as far as the kept head needs, then drop the rest unread.
        if (over && (!req.keepHeadOnOverflow || size >= OVERFLOW_HEAD_BYTES)) break;
      }
      if (over) {
        discard(res.body);
        const head = req.keepHeadOnOverflow
          ? Buffer.concat(chunks).subarray(0, OVERFLOW_HEAD_BYTES).toString("utf8")
          : undefined;
        throw tooLarge(head);
      }
      return { status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString("utf8") };
    } catch (err) {
      if (err instanceof CoordinatorError) throw err;
      if (req.signal?.aborted && !timedOut) {
        throw new CoordinatorError("aborted", `${where}: aborted`, null, null, { cause: err });
      }
      const code = errorCode(err);
      if (timedOut || (code !== null && TIMEOUT_CODES.has(code))) {
        throw new CoordinatorError(
          "timeout",
          `${where}: no complete ${phase} within ${timeoutMs} ms`,
          null,
          null,
          {
            cause: err,
          },
        );
      }
      const detail = code ?? (err instanceof Error ? this.scrub(err.message) : "unknown error");
      // Everything else below HTTP (refused, reset, DNS, TLS, closed socket) is "network".
      throw new CoordinatorError("network", `${where}: ${this.describe(code)} (${detail})`, null, null, {
        cause: err,
      });
    } finally {
      clearTimeout(timer);
      req.signal?.removeEventListener("abort", onCallerAbort);
    }
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
      res.status === 429 || res.status === 503 ? parseRetryAfter(res.headers["retry-after"]) : null;
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
