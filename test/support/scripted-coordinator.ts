// A bare loopback HTTP server that answers each aitbc route from a script, for answers the local
// coordinator never gives (an oversized job, a bad id, the same id twice, a poll that stalls). It
// logs every request with its raw path and body.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface SeenRequest {
  method: string;
  /** Raw request target, percent-encoding intact. */
  path: string;
  body: unknown;
  at: number;
}

/** A reply: status and JSON body, or a raw body, or "hang" (never answer). */
export type ScriptReply = { status: number; json?: unknown; raw?: string } | "hang";

export type Script = (req: SeenRequest, seen: SeenRequest[]) => ScriptReply | Promise<ScriptReply>;

export interface ScriptedCoordinator {
  url: string;
  seen: SeenRequest[];
  /** Requests whose path ends with `suffix` (e.g. "/fail"). */
  calls(suffix: string): SeenRequest[];
  waitFor(cond: () => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** Default answers: register/heartbeat ok, poll 204, result/fail ok, deregister 204. */
export function defaultReply(req: SeenRequest): ScriptReply {
  if (req.path.endsWith("/poll")) return { status: 204 };
  if (req.path.endsWith("/result")) return { status: 200, json: { status: "ok" } };
  if (req.method === "DELETE") return { status: 204 };
  return { status: 200, json: { status: "ok" } };
}

export async function startScriptedCoordinator(script: Script): Promise<ScriptedCoordinator> {
  const seen: SeenRequest[] = [];
  const hanging: ServerResponse[] = [];
  const server: Server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString("utf8");
    let body: unknown = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = text;
    }
    const entry: SeenRequest = { method: req.method ?? "GET", path: req.url ?? "/", body, at: Date.now() };
    seen.push(entry);
    const reply = await script(entry, seen);
    if (reply === "hang") {
      hanging.push(res);
      return;
    }
    if (reply.raw !== undefined) {
      res.writeHead(reply.status, { "content-type": "application/json" }).end(reply.raw);
    } else if (reply.json !== undefined) {
      res.writeHead(reply.status, { "content-type": "application/json" }).end(JSON.stringify(reply.json));
    } else {
      res.writeHead(reply.status).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    calls: (suffix) => seen.filter((r) => r.path.endsWith(suffix)),
    async waitFor(cond, timeoutMs = 60_000) {
      const until = Date.now() + timeoutMs;
      while (!cond()) {
        if (Date.now() > until)
          throw new Error(`scripted coordinator: condition not met within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const r of hanging) r.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
