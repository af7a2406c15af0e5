// The local coordinator's tables (jobs, miners) and their optional persistence: the whole state
// is rewritten atomically (tmp + fsync + rename) after each change and loaded on start, so a
// coordinator killed with SIGKILL and restarted keeps its jobs.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { z } from "zod";
import { writeFileAtomicSync } from "../file-io.js";

/** CANCELED: a client cancelled it while QUEUED or RUNNING (upstream's spelling). */
export type JobState = "QUEUED" | "RUNNING" | "COMPLETED" | "FAILED" | "CANCELED";
export type Dialect = "aitbc" | "claim";

export interface ReceiptCheck {
  ok: boolean;
  reason?: string | undefined;
}

export interface LocalJob {
  jobId: string;
  payload: Record<string, unknown>;
  constraints: Record<string, unknown>;
  state: JobState;
  /** Miner that holds (RUNNING) or last held the job. */
  minerId: string | null;
  /** Times the job was handed to a miner. */
  attempts: number;
  createdAt: number;
  assignedAt: number | null;
  completedAt: number | null;
  completedBy: string | null;
  /** aitbc: the `result` object; claim: `{output, completed_at}`. */
  result: unknown;
  metrics: unknown;
  minerReceipt: unknown;
  coordinatorReceipt: unknown;
  receiptCheck: ReceiptCheck | null;
  /** `code` is null in upstream mode, which keeps only the message. */
  error: { code: string | null; message: string } | null;
  /** Accepted submissions (1 when completed) and refused repeats. */
  submissions: number;
  duplicateSubmissions: number;
}

export interface LocalMiner {
  minerId: string;
  dialect: Dialect;
  capabilities: unknown;
  concurrency: number;
  region: string | null;
  registeredAt: number;
  lastHeartbeatAt: number | null;
  reportedInflight: number | null;
  metadata: unknown;
  /** Upstream mode's slot counter (see upstream.ts); reset to 0 on register. */
  inflight?: number;
  /** "ONLINE", "OFFLINE" after a deregister in upstream mode, or what a heartbeat says. */
  status?: string;
}

export interface NewJob {
  jobId?: string;
  payload: Record<string, unknown>;
  constraints?: Record<string, unknown>;
}

const persisted = z.object({
  version: z.literal(1),
  jobs: z.array(
    z.looseObject({
      jobId: z.string(),
      state: z.enum(["QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELED"]),
    }),
  ),
  miners: z.array(z.looseObject({ minerId: z.string() })),
});

export class CoordinatorState {
  readonly jobs = new Map<string, LocalJob>();
  readonly miners = new Map<string, LocalMiner>();
  /**
   * When each RUNNING job's lease began, on the schedule clock (core.tick). Not persisted: that
   * clock means nothing in another process, so a job RUNNING before a restart starts a new lease.
   */
  private readonly leaseTicks = new Map<string, number>();

  constructor(private readonly stateFile: string | undefined) {
    if (stateFile) this.load(stateFile);
  }

  private load(file: string): void {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw err;
    }
    const parsed = persisted.safeParse(JSON.parse(text));
    if (!parsed.success) throw new Error(`state file ${file} has an unexpected shape`);
    // The file is our own output; the shape check above guards against a foreign file.
    for (const j of parsed.data.jobs) this.jobs.set(j.jobId, j as unknown as LocalJob);
    for (const m of parsed.data.miners) this.miners.set(m.minerId, m as unknown as LocalMiner);
  }

  /** Persist after a change (no-op without a state file). */
  save(): void {
    if (!this.stateFile) return;
    const body = JSON.stringify({
      version: 1,
      jobs: [...this.jobs.values()],
      miners: [...this.miners.values()],
    });
    writeFileAtomicSync(this.stateFile, body, 0o600);
  }

  addJob(job: NewJob, now: number): LocalJob {
    const jobId = job.jobId ?? randomUUID();
    if (this.jobs.has(jobId)) throw new Error(`job ${jobId} already exists`);
    const j: LocalJob = {
      jobId,
      payload: job.payload,
      constraints: job.constraints ?? {},
      state: "QUEUED",
      minerId: null,
      attempts: 0,
      createdAt: now,
      assignedAt: null,
      completedAt: null,
      completedBy: null,
      result: null,
      metrics: null,
      minerReceipt: null,
      coordinatorReceipt: null,
      receiptCheck: null,
      error: null,
      submissions: 0,
      duplicateSubmissions: 0,
    };
    this.jobs.set(jobId, j);
    return j;
  }

  runningFor(minerId: string): number {
    let n = 0;
    for (const j of this.jobs.values()) if (j.state === "RUNNING" && j.minerId === minerId) n++;
    return n;
  }

  /** `now` is the wall time recorded; `tick` starts the lease. */
  assign(job: LocalJob, minerId: string, now: number, tick: number): void {
    job.state = "RUNNING";
    job.minerId = minerId;
    job.assignedAt = now;
    job.attempts++;
    this.leaseTicks.set(job.jobId, tick);
  }

  /**
   * A client's cancel (upstream's JobService.cancel_job): only a QUEUED or RUNNING job; it keeps no
   * miner, so it drops out of that miner's listing. False when the job was already final.
   */
  cancel(job: LocalJob, now: number): boolean {
    if (job.state !== "QUEUED" && job.state !== "RUNNING") return false;
    job.state = "CANCELED";
    job.error = { code: null, message: "canceled by client" };
    job.minerId = null;
    job.completedAt = now;
    this.leaseTicks.delete(job.jobId);
    return true;
  }

  requeue(job: LocalJob): void {
    job.state = "QUEUED";
    job.assignedAt = null;
    this.leaseTicks.delete(job.jobId);
  }

  /** When `job`'s lease began; one RUNNING since before a restart starts it at `tick`. */
  leaseStart(job: LocalJob, tick: number): number {
    const at = this.leaseTicks.get(job.jobId);
    if (at !== undefined) return at;
    this.leaseTicks.set(job.jobId, tick);
    return tick;
  }
}
