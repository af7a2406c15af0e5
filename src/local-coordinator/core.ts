// The local coordinator without HTTP: its tables, counters and events, and the job lifecycle both
// dialects share (enqueue, hand-over, completion, lease expiry, rate limits). server.ts puts HTTP
// on top; the route modules call in here; rules.ts / upstream.ts decide the policy points.
import { EventEmitter } from "node:events";
import { z } from "zod";
import { monotonicNow } from "../clock.js";
import { isValidJobId } from "../coordinator/ids.js";
import { type Logger, silentLogger } from "../log.js";
import { FaultInjector, type FaultKind } from "./faults.js";
import { type Ctx, HttpFail, RateLimitFail, type Reply, validate } from "./http.js";
import { matchesConstraints } from "./match.js";
import { DEFAULT_RATE_LIMITS, RateLimiter, type RateLimits } from "./rate-limit.js";
import { asObj, type CoordinatorRules, referenceRules } from "./rules.js";
import { CoordinatorState, type Dialect, type LocalJob, type LocalMiner, type NewJob } from "./state.js";
import type { CoordinatorEvent, LocalCoordinatorOptions, LocalCoordinatorStats } from "./types.js";
import { upstreamRules } from "./upstream.js";

const adminJob = z.object({
  jobId: z.string().refine(isValidJobId, "invalid job id").optional(),
  payload: z.record(z.string(), z.unknown()),
  constraints: z.record(z.string(), z.unknown()).optional(),
});

export class CoordinatorCore {
  readonly state: CoordinatorState;
  readonly rules: CoordinatorRules;
  readonly faults: FaultInjector;
  /** Wall time, for timestamps. */
  readonly now: () => number;
  /** Schedule time (leases, rate windows, held polls): monotonic unless a test steps `now`. */
  readonly tick: () => number;
  readonly log: Logger;
  /** aitbc session tokens (accepted as bearer tokens) → miner id. */
  readonly sessions = new Map<string, string>();
  /** Fired when a job may have become available (wakes held long-polls). */
  readonly jobsChanged = new EventEmitter().setMaxListeners(0);
  closed = false;
  private readonly limiter: RateLimiter;
  private readonly emitter = new EventEmitter();
  readonly counters = {
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

  constructor(readonly o: LocalCoordinatorOptions) {
    this.now = o.now ?? Date.now;
    this.tick = o.tick ?? o.now ?? monotonicNow;
    this.log = (o.log ?? silentLogger()).child({ component: "local-coordinator" });
    this.state = new CoordinatorState(o.stateFile);
    const limits: RateLimits = { ...DEFAULT_RATE_LIMITS, ...o.rateLimits };
    this.limiter = new RateLimiter(limits, this.tick);
    this.faults = new FaultInjector(o.faults);
    this.rules = o.upstreamQuirks ? upstreamRules : referenceRules;
    this.emitter.setMaxListeners(0);
  }

  leaseMs(): number {
    return this.rules.leases ? (this.o.leaseTimeoutMs ?? 600_000) : 0;
  }

  emit(e: CoordinatorEvent): void {
    // A job may have become available: held polls look again.
    if (e.type !== "heartbeat" && e.type !== "assigned") this.jobsChanged.emit("change");
    this.log.info(e, `coordinator ${e.type}`);
    this.o.onEvent?.(e);
    this.emitter.emit("event", e);
  }

  /** Count an injected fault and report it as an event. */
  fault(kind: FaultKind, route: string): void {
    this.faults.count(kind);
    this.emit({ type: "fault", kind, route });
  }

  /**
   * Take one call from the (route, client) budget; throws a 429 when it is spent. The client is the
   * miner on the reference coordinator, the caller's IP upstream (every miner of a host shares it).
   */
  limit(route: "register" | "heartbeat" | "poll" | "result", ctx: Ctx, minerId: string): void {
    const client = this.o.upstreamQuirks ? (ctx.req.socket.remoteAddress ?? "unknown") : minerId;
    const wait = this.limiter.take(route, client);
    if (wait === null) return;
    this.counters.rateLimited++;
    this.emit({ type: "rate_limited", route, client, retryAfterMs: wait });
    throw new RateLimitFail(wait);
  }

  knownJob(jobId: string | null): LocalJob {
    if (!isValidJobId(jobId)) throw new HttpFail(400, "invalid job id");
    const j = this.state.jobs.get(jobId);
    if (!j) throw new HttpFail(404, "job not found");
    return j;
  }

  // ---- the public API (LocalCoordinator) ---------------------------------------------------------

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

  /**
   * A client cancels a job (upstream's `POST /v1/jobs/{id}/cancel`): a QUEUED or RUNNING job
   * becomes CANCELED and keeps no miner. False when it was already final (left as it was).
   */
  cancel(jobId: string): boolean {
    const j = this.knownJob(jobId);
    const prev = j.minerId;
    if (!this.state.cancel(j, this.now())) return false;
    this.state.save();
    this.emit({ type: "cancelled", jobId, minerId: prev });
    return true;
  }

  jobs(): LocalJob[] {
    return [...this.state.jobs.values()].map((j) => structuredClone(j));
  }

  miners(): LocalMiner[] {
    return [...this.state.miners.values()].map((m) => structuredClone(m));
  }

  stats(): LocalCoordinatorStats {
    const jobs = { total: 0, queued: 0, running: 0, completed: 0, failed: 0, cancelled: 0 };
    for (const j of this.state.jobs.values()) {
      jobs.total++;
      if (j.state === "QUEUED") jobs.queued++;
      else if (j.state === "RUNNING") jobs.running++;
      else if (j.state === "COMPLETED") jobs.completed++;
      else if (j.state === "CANCELED") jobs.cancelled++;
      else jobs.failed++;
    }
    return structuredClone({ ...this.counters, jobs, faults: { ...this.faults.counts } });
  }

  on(listener: (event: CoordinatorEvent) => void): () => void {
    this.emitter.on("event", listener);
    return () => this.emitter.off("event", listener);
  }

  protected removeListeners(): void {
    this.emitter.removeAllListeners();
  }

  // ---- the job lifecycle both dialects share ---------------------------------------------------

  /** Requeue RUNNING jobs past their lease; returns how many. */
  sweepLeases(): number {
    const lease = this.leaseMs();
    if (lease <= 0) return 0;
    const t = this.tick();
    let n = 0;
    for (const j of this.state.jobs.values()) {
      if (j.state === "RUNNING" && t - this.state.leaseStart(j, t) >= lease) {
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

  upsertMiner(
    minerId: string,
    dialect: Dialect,
    capabilities: unknown,
    concurrency: number,
    region: string | null,
  ): void {
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

  /** Hand the first queued job this miner matches and has a slot for, or 204. */
  handOut(minerId: string): Reply {
    const m = this.state.miners.get(minerId);
    if (!m) throw this.rules.unknownMinerPoll();
    this.sweepLeases();
    if (!this.rules.hasSlot(m, this.state)) return { status: 204 };
    for (const j of this.state.jobs.values()) {
      if (j.state !== "QUEUED" || !matchesConstraints(j.constraints, m.capabilities, m.region)) continue;
      this.state.assign(j, minerId, this.now(), this.tick());
      this.rules.assigned(m);
      this.state.save();
      this.emit({ type: "assigned", jobId: j.jobId, minerId, attempt: j.attempts });
      const fails = this.rules.handOverFails(j);
      if (fails) throw fails;
      return {
        status: 200,
        json: { job_id: j.jobId, payload: j.payload, constraints: j.constraints },
        committed: true,
      };
    }
    return { status: 204 };
  }

  /**
   * Complete a job; a submission the rules refuse (reference: any after the first) is a 409 and
   * counted as a duplicate.
   */
  finish(j: LocalJob, minerId: string, result: unknown, metrics: unknown, minerReceipt: unknown): Reply {
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
}
