// Request/reply shapes shared by the local coordinator's route handlers, and the error they
// throw to answer with a status other than 200.
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

export function validate<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw new HttpFail(400, issue ? `${issue.path.join(".") || "body"}: ${issue.message}` : "invalid body");
}
