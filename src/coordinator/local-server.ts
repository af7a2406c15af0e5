// A local, in-memory coordinator speaking both dialects at once, with the reference semantics of
// DESIGN §2 (auth, 204 when idle, concurrency, rate limits, leases, exactly-once completion), or
// with `upstreamQuirks` the real upstream coordinator's (§2c; the policy hooks are in local/rules.ts
// and local/upstream.ts).
// Used by the demo, the tests and operators' smoke tests; optional persistence and seeded
// faults make crash and flaky-network tests possible.
import { randomUUID, timingSafeEqual } from "node:crypto";
import { EventEmitter } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { z } from "zod";
import { type Logger, silentLogger } from "../log.js";
import { isValidJobId, isValidMinerId } from "./ids.js";
import { FaultInjector } from "./local/faults.js";
import { type Ctx, HttpFail, type Reply, validate } from "./local/http.js";
import { matchesConstraints } from "./local/match.js";
import { DEFAULT_RATE_LIMITS, RateLimiter, type RateLimits } from "./local/rate-limit.js";
import { asObj, type CoordinatorRules, referenceRules } from "./local/rules.js";
import type {
  CoordinatorEvent,
  LocalCoordinator,
  LocalCoordinatorOptions,
  LocalCoordinatorStats,
} from "./local/server-types.js";
import { CoordinatorState, type LocalJob, type NewJob } from "./local/state.js";
import { upstreamRules } from "./local/upstream.js";

export type { FaultOptions } from "./local/faults.js";
export type * from "./local/server-types.js";
export type { JobState, LocalJob, LocalMiner, NewJob, ReceiptCheck } from "./local/state.js";

type Obj = Record<string, unknown>;
const obj = z.record(z.string(), z.unknown());

const aitbcRegister = z.object({
  capabilities: obj,
  concurrency: z.number().int().min(1).max(1024).default(1),
  region: z.string().max(64).nullish(),
});
const claimRegister = z.object({
  miner_id: z.string().refine(isValidMinerId, "invalid miner_id"),
  capabilities: z.array(z.string().max(256)).max(1000),
  gpu_info: z.unknown().optional(),
});
const heartbeatBody = z.looseObject({
  inflight: z.number().int().min(0).optional(),
  status: z.string().optional(),
  metadata: z.unknown().optional(),
});
const resultBody = z.looseObject({ result: z.looseObject({}), metrics: z.unknown().optional() });
const failBody = z.looseObject({
  error_code: z.string().min(1).max(200),
  error_message: z.string().max(10_000).default(""),
});
const claimBody = z.looseObject({ miner_id: z.string().refine(isValidMinerId, "invalid miner_id") });
const completeBody = z.looseObject({
  miner_id: z.string().refine(isValidMinerId, "invalid miner_id"),
  result: z.string(),
  completed_at: z.string().optional(),
  receipt: z.unknown().optional(),
});
const adminJob = z.object({
  jobId: z.string().refine(isValidJobId, "invalid job id").optional(),
  payload: obj,
  constraints: obj.optional(),
});

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

class Coordinator implements LocalCoordinator {
  url = "";
  host: string;
  port = 0;
  private readonly state: CoordinatorState;
  private readonly limiter: RateLimiter;
  private readonly faults: FaultInjector;
  private readonly rules: CoordinatorRules;
  private readonly emitter = new EventEmitter();
  /** Fired when a job may have become available (wakes held long-polls). */
  private readonly jobsChanged = new EventEmitter().setMaxListeners(0);
  private closed = false;
  private readonly sessions = new Map<string, string>();
  private readonly now: () => number;
  private readonly log: Logger;
  private readonly server = createServer((req, res) => void this.handle(req, res));
  private sweepTimer: NodeJS.Timeout | null = null;
  private readonly counters = {
    requests: 0,
    byRoute: {} as Record<string, number>,
    byStatus: {} as Record<string, number>,
    completions: 0,
    duplicateSubmissions: 0,
    failures: 0,
    requeued: 0,
    leaseExpired: 0,
    rateLimited: 0,
    authFailures: 0,
    receipts: { verified: 0, rejected: 0 },
  };

  constructor(private readonly o: LocalCoordinatorOptions) {
    this.host = o.host ?? "127.0.0.1";
    this.now = o.now ?? Date.now;
    this.log = (o.log ?? silentLogger()).child({ component: "local-coordinator" });
    this.state = new CoordinatorState(o.stateFile);
    const limits: RateLimits = { ...DEFAULT_RATE_LIMITS, ...o.rateLimits };
    this.limiter = new RateLimiter(limits, this.now);
    this.faults = new FaultInjector(o.faults);
    this.rules = o.upstreamQuirks ? upstreamRules : referenceRules;
    this.emitter.setMaxListeners(0);
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

  private leaseMs(): number {
    return this.rules.leases ? (this.o.leaseTimeoutMs ?? 600_000) : 0;
  }

  private emit(e: CoordinatorEvent): void {
    // A job may have become available: held polls look again.
    if (e.type !== "heartbeat" && e.type !== "assigned") this.jobsChanged.emit("change");
    this.log.info(e, `coordinator ${e.type}`);
    this.o.onEvent?.(e);
    this.emitter.emit("event", e);
  }

  // ---- public API --------------------------------------------------------------------------

  enqueue(job: NewJob): string {
    const j = this.state.addJob(validate(adminJob, job) as NewJob, this.now());
    this.state.save();
    this.emit({ type: "enqueued", jobId: j.jobId });
    return j.jobId;
  }

  job(jobId: string): LocalJob | undefined {
    const j = this.state.jobs.get(jobId);
    return j ? structuredClone(j) : undefined;
  }

  jobs(): LocalJob[] {
    return [...this.state.jobs.values()].map((j) => structuredClone(j));
  }

  miners() {
    return [...this.state.miners.values()].map((m) => structuredClone(m));
  }

  stats(): LocalCoordinatorStats {
    const jobs = { total: 0, queued: 0, running: 0, completed: 0, failed: 0 };
    for (const j of this.state.jobs.values()) {
      jobs.total++;
      if (j.state === "QUEUED") jobs.queued++;
      else if (j.state === "RUNNING") jobs.running++;
      else if (j.state === "COMPLETED") jobs.completed++;
      else jobs.failed++;
    }
    return structuredClone({ ...this.counters, jobs, faults: { ...this.faults.counts } });
  }

  on(listener: (event: CoordinatorEvent) => void): () => void {
    this.emitter.on("event", listener);
    return () => this.emitter.off("event", listener);
  }

  waitFor(predicate: (c: LocalCoordinator) => boolean, timeoutMs = 10_000): Promise<void> {
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

  sweepLeases(): number {
    const lease = this.leaseMs();
    if (lease <= 0) return 0;
    const t = this.now();
    let n = 0;
    for (const j of this.state.jobs.values()) {
      if (j.state === "RUNNING" && j.assignedAt !== null && t - j.assignedAt >= lease) {
        this.state.requeue(j);
        this.counters.leaseExpired++;
        this.counters.requeued++;
        n++;
        this.emit({ type: "lease_expired", jobId: j.jobId, minerId: j.minerId });
      }
    }
    if (n > 0) this.state.save();
    return n;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.jobsChanged.emit("change");
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.emitter.removeAllListeners();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  // ---- HTTP --------------------------------------------------------------------------------

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
    }
    if (seg[1] === "jobs") {
      if (seg.length === 3 && method === "GET" && seg[2] === "available")
        return { name: "available", param: null };
      if (seg.length === 4 && method === "POST" && (seg[3] === "claim" || seg[3] === "complete")) {
        return { name: seg[3], param: decode(seg[2]!) };
      }
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
      const mutates = ["register", "result", "fail", "claim", "complete", "deregister"].includes(routeName);
      const plan = isAdmin ? null : this.faults.plan(routeName, mutates);
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
      let reply = this.dispatch(routeName, route.param, ctx);
      if (routeName === "poll" && reply.status === 204) reply = await this.holdPoll(ctx, req);
      if (plan?.dropAfterCommit && reply.committed) {
        this.fault("dropAfterCommit", routeName);
        req.socket.destroy();
        return;
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

  private fault(kind: "reset" | "serverError" | "slow" | "dropAfterCommit", route: string): void {
    this.faults.count(kind);
    this.emit({ type: "fault", kind, route });
  }

  private authorize(route: string, req: IncomingMessage, body: unknown): void {
    const keys = this.o.apiKeys ?? [];
    if (keys.length === 0 || route === "health") return;
    const claimShaped =
      route === "available" ||
      route === "claim" ||
      route === "complete" ||
      (route === "register" &&
        typeof body === "object" &&
        body !== null &&
        Array.isArray((body as Obj)["capabilities"]));
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

  private limit(route: "register" | "heartbeat" | "poll" | "result", client: string): void {
    const wait = this.limiter.take(route, client);
    if (wait === null) return;
    this.counters.rateLimited++;
    this.emit({ type: "rate_limited", route, client, retryAfterMs: wait });
    throw new RateLimitFail(wait);
  }

  private minerFromHeader(ctx: Ctx): string {
    const id = ctx.minerHeader;
    if (!isValidMinerId(id)) throw new HttpFail(400, "missing or invalid X-Miner-ID header");
    return id;
  }

  private knownJob(jobId: string | null): LocalJob {
    if (!isValidJobId(jobId)) throw new HttpFail(400, "invalid job id");
    const j = this.state.jobs.get(jobId);
    if (!j) throw new HttpFail(404, "job not found");
    return j;
  }

  private dispatch(route: string, param: string | null, ctx: Ctx): Reply {
    switch (route) {
      case "health":
        return { status: 200, json: { status: "ok" } };
      case "register":
        return this.register(ctx);
      case "heartbeat":
        return this.heartbeat(ctx);
      case "poll":
        return this.poll(ctx);
      case "result":
        return this.result(param, ctx);
      case "fail":
        return this.fail(param, ctx);
      case "deregister":
        return this.deregister(param);
      case "available":
        return this.available(ctx);
      case "claim":
        return this.claim(param, ctx);
      case "complete":
        return this.complete(param, ctx);
      case "admin_enqueue":
        return { status: 201, json: { job_id: this.enqueue(validate(adminJob, ctx.body) as NewJob) } };
      case "admin_jobs":
        return { status: 200, json: this.jobs() };
      case "admin_stats":
        return { status: 200, json: this.stats() };
      case "admin_miners":
        return { status: 200, json: this.miners() };
      default:
        throw new HttpFail(404, "no such route");
    }
  }

  // ---- aitbc dialect -----------------------------------------------------------------------

  private register(ctx: Ctx): Reply {
    const body = ctx.body as Obj;
    if (Array.isArray(body["capabilities"])) {
      const b = validate(claimRegister, body);
      this.limit("register", b.miner_id);
      this.upsertMiner(b.miner_id, "claim", b.capabilities, 1, null);
      return { status: 200, json: { status: "ok" }, committed: true };
    }
    const minerId = this.minerFromHeader(ctx);
    this.limit("register", minerId);
    const b = validate(aitbcRegister, body);
    this.upsertMiner(minerId, "aitbc", b.capabilities, b.concurrency, b.region ?? null);
    const token = randomUUID();
    this.sessions.set(token, minerId);
    return { status: 200, json: { status: "ok", session_token: token }, committed: true };
  }

  private upsertMiner(
    minerId: string,
    dialect: "aitbc" | "claim",
    capabilities: unknown,
    concurrency: number,
    region: string | null,
  ) {
    const prev = this.state.miners.get(minerId);
    this.state.miners.set(minerId, {
      minerId,
      dialect,
      capabilities,
      concurrency,
      region,
      registeredAt: this.now(),
      lastHeartbeatAt: prev?.lastHeartbeatAt ?? null,
      reportedInflight: prev?.reportedInflight ?? null,
      metadata: prev?.metadata ?? null,
      inflight: 0,
      status: "ONLINE",
    });
    this.state.save();
    this.emit({ type: "registered", minerId, dialect, concurrency });
  }

  private heartbeat(ctx: Ctx): Reply {
    const minerId = this.minerFromHeader(ctx);
    this.limit("heartbeat", minerId);
    const b = validate(heartbeatBody, ctx.body);
    const m = this.state.miners.get(minerId);
    if (!m) throw new HttpFail(404, "miner not registered");
    m.lastHeartbeatAt = this.now();
    m.reportedInflight = b.inflight ?? null;
    m.metadata = b.metadata ?? null;
    m.status = b.status ?? "ONLINE";
    this.rules.heartbeat(m, b.inflight);
    this.emit({ type: "heartbeat", minerId, inflight: m.reportedInflight });
    return { status: 200, json: { status: "ok" } };
  }

  private poll(ctx: Ctx): Reply {
    const minerId = this.minerFromHeader(ctx);
    this.limit("poll", minerId);
    return this.handOut(minerId);
  }

  /**
   * Long-poll: with `longPollMaxSeconds`, a poll that finds no job is held until one is queued
   * (or the wait the miner asked for, capped, runs out), then answered as a poll at that moment.
   * The rate limit counts it once.
   */
  private async holdPoll(ctx: Ctx, req: IncomingMessage): Promise<Reply> {
    const asked = Number((ctx.body as Obj | undefined)?.["max_wait_seconds"] ?? 0);
    const waitMs = Math.min(Number.isFinite(asked) ? asked : 0, this.o.longPollMaxSeconds ?? 0) * 1000;
    if (waitMs <= 0) return { status: 204 };
    const minerId = this.minerFromHeader(ctx);
    const until = Date.now() + waitMs;
    let gone = false;
    const onClose = () => {
      gone = true;
      this.jobsChanged.emit("change");
    };
    req.socket.once("close", onClose);
    try {
      while (!gone && !this.closed) {
        const left = until - Date.now();
        if (left <= 0) return { status: 204 };
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(timer);
            this.jobsChanged.off("change", done);
            resolve();
          };
          const timer = setTimeout(done, left);
          this.jobsChanged.once("change", done);
        });
        if (gone || this.closed) break;
        const reply = this.handOut(minerId);
        if (reply.status !== 204) return reply;
      }
      return { status: 204 };
    } finally {
      req.socket.off("close", onClose);
    }
  }

  private handOut(minerId: string): Reply {
    const m = this.state.miners.get(minerId);
    if (!m) throw this.rules.unknownMinerPoll();
    this.sweepLeases();
    if (!this.rules.hasSlot(m, this.state)) return { status: 204 };
    for (const j of this.state.jobs.values()) {
      if (j.state !== "QUEUED" || !matchesConstraints(j.constraints, m.capabilities, m.region)) continue;
      this.state.assign(j, minerId, this.now());
      this.rules.assigned(m);
      this.state.save();
      this.emit({ type: "assigned", jobId: j.jobId, minerId, attempt: j.attempts });
      return { status: 200, json: { job_id: j.jobId, payload: j.payload, constraints: j.constraints } };
    }
    return { status: 204 };
  }

  private result(param: string | null, ctx: Ctx): Reply {
    const minerId = this.minerFromHeader(ctx);
    this.limit("result", minerId);
    const b = validate(resultBody, ctx.body);
    const j = this.knownJob(param);
    return this.finish(j, minerId, b.result, b.metrics ?? null, b.result["receipt"]);
  }

  /**
   * Complete a job; a submission the rules refuse (reference: any after the first) is a 409 and
   * counted as a duplicate.
   */
  private finish(
    j: LocalJob,
    minerId: string,
    result: unknown,
    metrics: unknown,
    minerReceipt: unknown,
  ): Reply {
    if (!this.rules.acceptsResult(j)) {
      j.duplicateSubmissions++;
      this.counters.duplicateSubmissions++;
      this.state.save();
      this.emit({ type: "duplicate", jobId: j.jobId, minerId });
      throw new HttpFail(409, `job already ${j.state.toLowerCase()}`);
    }
    // A late result for a job requeued after its lease, not yet taken elsewhere, is still
    // accepted: the work is done, and completion stays exactly-once.
    j.state = "COMPLETED";
    j.completedAt = this.now();
    j.completedBy = minerId;
    j.minerId = minerId;
    j.result = result;
    j.metrics = metrics;
    j.minerReceipt = minerReceipt ?? null;
    j.submissions++;
    this.rules.resultAccepted(j, this.state.miners.get(minerId));
    if (this.o.verifyReceipt) {
      let check: { ok: boolean; reason?: string | undefined };
      try {
        check = this.o.verifyReceipt(minerReceipt);
      } catch (err) {
        check = { ok: false, reason: err instanceof Error ? err.message : String(err) };
      }
      j.receiptCheck = check;
      if (check.ok) this.counters.receipts.verified++;
      else this.counters.receipts.rejected++;
    }
    let raw: string | undefined;
    if (this.o.signReceipt) {
      const payload = this.rules.receiptPayload(j, minerId, asObj(result), metrics, this.now());
      const signed = this.rules.afterSigning(this.o.signReceipt(payload));
      j.coordinatorReceipt = typeof signed === "string" ? JSON.parse(signed) : signed;
      raw = `{"status":"ok","receipt":${typeof signed === "string" ? signed : JSON.stringify(signed)}}`;
    }
    this.counters.completions++;
    this.state.save();
    this.emit({ type: "completed", jobId: j.jobId, minerId, receiptCheck: j.receiptCheck });
    return raw !== undefined
      ? { status: 200, raw, committed: true }
      : { status: 200, json: { status: "ok" }, committed: true };
  }

  private fail(param: string | null, ctx: Ctx): Reply {
    const minerId = this.minerFromHeader(ctx);
    const b = validate(failBody, ctx.body);
    const j = this.knownJob(param);
    const verdict = this.rules.failVerdict(
      j,
      minerId,
      { code: b.error_code, message: b.error_message },
      this.o.requeueOnFail === true,
    );
    const requeue = verdict.requeue;
    j.error = verdict.error;
    this.counters.failures++;
    if (requeue) {
      this.state.requeue(j);
      this.counters.requeued++;
    } else {
      j.state = "FAILED";
      j.completedAt = this.now();
    }
    this.state.save();
    this.emit({ type: "failed", jobId: j.jobId, minerId, errorCode: b.error_code, requeued: requeue });
    return { status: 200, json: { status: "ok" }, committed: true };
  }

  private deregister(param: string | null): Reply {
    if (!isValidMinerId(param)) throw new HttpFail(400, "invalid miner id");
    const { json, requeued } = this.rules.deregister(this.state, param);
    for (const [token, id] of this.sessions) if (id === param) this.sessions.delete(token);
    this.counters.requeued += requeued;
    this.state.save();
    this.emit({ type: "deregistered", minerId: param, requeued });
    return { status: 200, json, committed: true };
  }

  // ---- claim dialect -----------------------------------------------------------------------

  private available(ctx: Ctx): Reply {
    const minerId = ctx.url.searchParams.get("miner_id");
    if (!isValidMinerId(minerId)) throw new HttpFail(400, "missing or invalid miner_id");
    this.limit("poll", minerId);
    this.sweepLeases();
    const m = this.state.miners.get(minerId);
    for (const j of this.state.jobs.values()) {
      if (j.state !== "QUEUED") continue;
      if (m && !matchesConstraints(j.constraints, m.capabilities, m.region)) continue;
      return { status: 200, json: { ...j.payload, job_id: j.jobId } };
    }
    return { status: 204 };
  }

  private claim(param: string | null, ctx: Ctx): Reply {
    const b = validate(claimBody, ctx.body);
    const j = this.knownJob(param);
    if (j.state !== "QUEUED") throw new HttpFail(409, "job already claimed");
    this.state.assign(j, b.miner_id, this.now());
    this.state.save();
    this.emit({ type: "assigned", jobId: j.jobId, minerId: b.miner_id, attempt: j.attempts });
    return { status: 200, json: { status: "claimed", job_id: j.jobId }, committed: true };
  }

  private complete(param: string | null, ctx: Ctx): Reply {
    const b = validate(completeBody, ctx.body);
    this.limit("result", b.miner_id);
    const j = this.knownJob(param);
    return this.finish(
      j,
      b.miner_id,
      { output: b.result, completed_at: b.completed_at ?? null },
      null,
      b.receipt,
    );
  }
}

const ROUTE_TEMPLATES: Record<string, string> = {
  register: "POST /v1/miners/register",
  heartbeat: "POST /v1/miners/heartbeat",
  poll: "POST /v1/miners/poll",
  result: "POST /v1/miners/{job_id}/result",
  fail: "POST /v1/miners/{job_id}/fail",
  deregister: "DELETE /v1/miners/{miner_id}",
  available: "GET /v1/jobs/available",
  claim: "POST /v1/jobs/{job_id}/claim",
  complete: "POST /v1/jobs/{job_id}/complete",
};

/** "METHOD /path/{param}" for stats: one key per route, never one per id. */
function routeLabel(method: string, name: string, path: string): string {
  if (name === "health") return `GET ${path}`;
  if (name.startsWith("admin_"))
    return `${method} /_admin/${name === "admin_enqueue" ? "jobs" : name.slice(6)}`;
  return ROUTE_TEMPLATES[name] ?? "unknown";
}

class RateLimitFail extends HttpFail {
  constructor(readonly retryAfterMs: number) {
    super(429, "rate limit exceeded");
  }
}

function retryHeaders(err: HttpFail): Record<string, string> | undefined {
  if (err instanceof RateLimitFail)
    return { "retry-after": String(Math.max(1, Math.ceil(err.retryAfterMs / 1000))) };
  return undefined;
}

/** Start a local coordinator on loopback; resolves once it listens. */
export async function startLocalCoordinator(opts: LocalCoordinatorOptions = {}): Promise<LocalCoordinator> {
  const c = new Coordinator(opts);
  await c.listen();
  return c;
}
