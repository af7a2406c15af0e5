// The contract between the local coordinator's server (server.ts) and its route handlers: the
// request a handler gets, the reply it returns, and the errors it throws to answer otherwise.
import type { IncomingMessage } from "node:http";
import type { z } from "zod";

export interface Reply {
  status: number;
  json?: unknown;
  /** Pre-serialised JSON body (keeps a signer's raw receipt text intact). */
  raw?: string;
  headers?: Record<string, string>;
  /** The handler changed state (a dropAfterCommit fault may now cut the connection). */
  committed?: boolean;
}

export interface Ctx {
  req: IncomingMessage;
  url: URL;
  body: unknown;
  minerHeader: string | null;
}

/** A route handler: `param` is the decoded path parameter (job or miner id), if the route has one. */
export type Handler = (ctx: Ctx, param: string | null) => Reply | Promise<Reply>;

export class HttpFail extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** Answer body; default `{detail: message}`. */
    readonly body?: unknown,
  ) {
    super(message);
  }
}

/** A 429; the server turns `retryAfterMs` into a Retry-After header. */
export class RateLimitFail extends HttpFail {
  constructor(readonly retryAfterMs: number) {
    super(429, "rate limit exceeded");
  }
}

export function validate<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw new HttpFail(400, issue ? `${issue.path.join(".") || "body"}: ${issue.message}` : "invalid body");
}
