// The local coordinator's HTTP side: it routes a request to a handler (aitbc-routes.ts,
// claim-routes.ts, admin-routes.ts), reads and parses the body, checks the API key, applies the
// seeded faults (faults.ts), and sends the reply. The coordinator itself is core.ts.
import { timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { adminRoutes } from "./admin-routes.js";
import { aitbcRoutes } from "./aitbc-routes.js";
import { claimRoutes, isClaimRegister } from "./claim-routes.js";
import { CoordinatorCore } from "./core.js";
import { minerEarnings, trustScore } from "./earnings-routes.js";
import { type Ctx, type Handler, HttpFail, RateLimitFail, type Reply } from "./http.js";
import { jobRoutes } from "./job-routes.js";
import type { LocalCoordinator, LocalCoordinatorOptions } from "./types.js";

/** Routes that change state: a dropAfterCommit fault may cut their connection after the change. */
const MUTATING = new Set(["register", "result", "fail", "claim", "complete", "deregister"]);

const ROUTE_TEMPLATES: Record<string, string> = {
  register: "POST /v1/miners/register",
  heartbeat: "POST /v1/miners/heartbeat",
  poll: "POST /v1/miners/poll",
  result: "POST /v1/miners/{job_id}/result",
  fail: "POST /v1/miners/{job_id}/fail",
  deregister: "DELETE /v1/miners/{miner_id}",
  miner_jobs: "POST /v1/miners/{miner_id}/jobs",
  miner_earnings: "POST /v1/miners/{miner_id}/earnings",
  trust_score: "GET /v1/reputation/trust-score/{miner_id}",
  available: "GET /v1/jobs/available",
  claim: "POST /v1/jobs/{job_id}/claim",
  complete: "POST /v1/jobs/{job_id}/complete",
  cancel: "POST /v1/jobs/{job_id}/cancel",
  job_view: "GET /v1/jobs/{job_id}",
};

/** "METHOD /path/{param}" for stats: one key per route, never one per id. */
function routeLabel(method: string, name: string, path: string): string {
  if (name === "health") return `GET ${path}`;
  if (name.startsWith("admin_"))
    return `${method} /_admin/${name === "admin_enqueue" ? "jobs" : name.slice(6)}`;
  return ROUTE_TEMPLATES[name] ?? "unknown";
}

function retryHeaders(err: HttpFail): Record<string, string> | undefined {
  if (err instanceof RateLimitFail)
    return { "retry-after": String(Math.max(1, Math.ceil(err.retryAfterMs / 1000))) };
  return undefined;
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers["content-length"]);
    if (Number.isFinite(declared) && declared > limit) {
      reject(new HttpFail(413, `request body over ${limit} bytes`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new HttpFail(413, `request body over ${limit} bytes`));
        req.pause();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

export class LocalCoordinatorServer extends CoordinatorCore implements LocalCoordinator {
  url = "";
  host: string;
  port = 0;
  private readonly server = createServer((req, res) => void this.handle(req, res));
  private sweepTimer: NodeJS.Timeout | null = null;
  private readonly handlers: Record<string, Handler>;

  constructor(o: LocalCoordinatorOptions) {
    super(o);
    this.host = o.host ?? "127.0.0.1";
    const aitbc = aitbcRoutes(this);
    const claim = claimRoutes(this);
    this.handlers = {
      ...aitbc,
      ...claim,
      ...jobRoutes(this),
      ...adminRoutes(this),
      health: () => ({ status: 200, json: { status: "ok" } }),
      miner_earnings: (_ctx, param) => minerEarnings(this, param),
      trust_score: (_ctx, param) => trustScore(this, param),
      register: (ctx, param) => (isClaimRegister(ctx.body) ? claim : aitbc)["register"]!(ctx, param),
    };
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.o.port ?? 0, this.host, () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    const addr = this.server.address() as AddressInfo;
    this.port = addr.port;
    const h = this.host.includes(":") ? `[${this.host}]` : this.host;
    this.url = `http://${h}:${this.port}`;
    const lease = this.leaseMs();
    if (lease > 0) {
      this.sweepTimer = setInterval(() => this.sweepLeases(), Math.min(1000, Math.max(10, lease / 2)));
      this.sweepTimer.unref();
    }
  }

  waitFor(predicate: (c: LocalCoordinator) => boolean, timeoutMs = 60_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        let ok = false;
        try {
          ok = predicate(this);
        } catch (err) {
          done();
          reject(err);
          return;
        }
        if (ok) {
          done();
          resolve();
        }
      };
      const off = this.on(check);
      const tick = setInterval(check, 25);
      const timer = setTimeout(() => {
        done();
        reject(new Error(`local coordinator: condition not met within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = () => {
        off();
        clearInterval(tick);
        clearTimeout(timer);
      };
      check();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.jobsChanged.emit("change");
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.removeListeners();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private route(method: string, path: string): { name: string; param: string | null } | null {
    const seg = path.split("/").filter((s) => s !== "");
    const decode = (s: string) => {
      try {
        return decodeURIComponent(s);
      } catch {
        throw new HttpFail(400, "bad percent-encoding in path");
      }
    };
    if (method === "GET" && this.rules.healthPaths.has(path)) return { name: "health", param: null };
    if (seg[0] === "_admin" && this.o.admin && seg.length === 2) {
      return { name: `admin_${method === "POST" ? "enqueue" : seg[1]}`, param: seg[1] ?? null };
    }
    if (seg[0] !== "v1") return null;
    if (seg[1] === "miners") {
      if (seg.length === 3 && method === "POST" && seg[2] === "register")
        return { name: "register", param: null };
      if (seg.length === 3 && method === "POST" && seg[2] === "heartbeat")
        return { name: "heartbeat", param: null };
      if (seg.length === 3 && method === "POST" && seg[2] === "poll") return { name: "poll", param: null };
      if (seg.length === 3 && method === "DELETE") return { name: "deregister", param: decode(seg[2]!) };
      if (seg.length === 4 && method === "POST" && (seg[3] === "result" || seg[3] === "fail")) {
        return { name: seg[3], param: decode(seg[2]!) };
      }
      if (seg.length === 4 && method === "POST" && seg[3] === "jobs")
        return { name: "miner_jobs", param: decode(seg[2]!) };
      if (seg.length === 4 && method === "POST" && seg[3] === "earnings")
        return { name: "miner_earnings", param: decode(seg[2]!) };
    }
    if (seg[1] === "reputation" && seg[2] === "trust-score" && seg.length === 4 && method === "GET")
      return { name: "trust_score", param: decode(seg[3]!) };
    if (seg[1] === "jobs") {
      if (seg.length === 3 && method === "GET" && seg[2] === "available")
        return { name: "available", param: null };
      if (seg.length === 4 && method === "POST" && (seg[3] === "claim" || seg[3] === "complete")) {
        return { name: seg[3], param: decode(seg[2]!) };
      }
      if (seg.length === 4 && method === "POST" && seg[3] === "cancel")
        return { name: "cancel", param: decode(seg[2]!) };
      if (seg.length === 3 && method === "GET") return { name: "job_view", param: decode(seg[2]!) };
    }
    return null;
  }

  private send(res: ServerResponse, reply: Reply): void {
    const body = reply.raw ?? (reply.json === undefined ? "" : JSON.stringify(reply.json));
    const key = String(reply.status);
    this.counters.byStatus[key] = (this.counters.byStatus[key] ?? 0) + 1;
    if (res.destroyed || res.writableEnded) return;
    res.writeHead(reply.status, {
      ...(body ? { "content-type": "application/json" } : {}),
      "content-length": Buffer.byteLength(body),
      ...reply.headers,
    });
    res.end(body);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.counters.requests++;
    let routeName = "unknown";
    try {
      // Concatenate rather than resolve: "//x" must stay a path, not become a host.
      const url = new URL(`http://local${(req.url ?? "/").startsWith("/") ? "" : "/"}${req.url ?? ""}`);
      const route = this.route(req.method ?? "GET", url.pathname);
      if (!route) throw new HttpFail(404, "no such route");
      routeName = route.name;
      const label = routeLabel(req.method ?? "GET", route.name, url.pathname);
      this.counters.byRoute[label] = (this.counters.byRoute[label] ?? 0) + 1;

      const isAdmin = routeName.startsWith("admin_");
      const plan = isAdmin ? null : this.faults.plan(routeName, MUTATING.has(routeName));
      if (plan?.reset) {
        this.fault("reset", routeName);
        req.socket.destroy();
        return;
      }
      if (plan?.serverError) {
        this.fault("serverError", routeName);
        throw new HttpFail(500, "injected server error");
      }
      if (plan && plan.slowMs > 0) {
        this.fault("slow", routeName);
        await new Promise((r) => setTimeout(r, plan.slowMs));
      }

      let body: unknown;
      if (req.method === "POST") {
        const text = await readBody(req, this.o.maxBodyBytes ?? 1024 * 1024);
        try {
          body = text.trim() === "" ? {} : JSON.parse(text);
        } catch {
          throw new HttpFail(400, "body is not valid JSON");
        }
      }
      const minerHeader = typeof req.headers["x-miner-id"] === "string" ? req.headers["x-miner-id"] : null;
      const ctx: Ctx = { req, url, body, minerHeader };
      this.authorize(routeName, req, body);
      const handler = Object.hasOwn(this.handlers, routeName) ? this.handlers[routeName] : undefined;
      if (!handler) throw new HttpFail(404, "no such route");
      const reply = await handler(ctx, route.param);
      if (plan?.dropAfterCommit && reply.committed) {
        this.fault("dropAfterCommit", routeName);
        req.socket.destroy();
        return;
      }
      if (plan?.serverErrorAfterCommit && reply.committed) {
        this.fault("serverErrorAfterCommit", routeName);
        throw new HttpFail(500, "injected server error after the change was made");
      }
      this.send(res, reply);
    } catch (err) {
      if (err instanceof HttpFail) {
        // 413: the rest of the body is unread, so the connection cannot be reused.
        const headers = err.status === 413 ? { connection: "close" } : retryHeaders(err);
        this.send(res, { status: err.status, json: err.body ?? { detail: err.message }, headers });
        return;
      }
      this.log.error({ err, route: routeName }, "local coordinator handler failed");
      this.send(res, { status: 500, json: { detail: "internal error" } });
    }
  }

  private authorize(route: string, req: IncomingMessage, body: unknown): void {
    const keys = this.o.apiKeys ?? [];
    // Upstream's trust score is public (no auth), like health.
    if (keys.length === 0 || route === "health" || route === "trust_score") return;
    const claimShaped =
      route === "available" ||
      route === "claim" ||
      route === "complete" ||
      route === "job_view" ||
      (route === "register" && isClaimRegister(body));
    if (claimShaped && !this.o.claimRequiresKey) return;
    const key = req.headers["x-api-key"];
    if (typeof key === "string" && keys.some((k) => safeEqual(k, key))) return;
    const auth = req.headers.authorization;
    const bearer = typeof auth === "string" && /^Bearer /i.test(auth) ? auth.slice(7).trim() : null;
    if (bearer && (keys.some((k) => safeEqual(k, bearer)) || this.sessions.has(bearer))) return;
    this.counters.authFailures++;
    this.emit({ type: "auth_failed", route });
    throw new HttpFail(401, "invalid or missing API key");
  }
}
