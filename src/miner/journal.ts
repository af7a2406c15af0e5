// Claim journal (docs/architecture.md#durability-rules): a job is on disk from the moment it is ours until it has a result in
// the outbox or was reported failed, so a restart knows what it had taken on.
import { z } from "zod";
import { DurableRecords } from "./durable-records.js";
import type { CorruptRecord } from "./durable-store.js";

export interface ClaimedJob {
  jobId: string;
  payload: unknown;
  constraints: unknown;
  claimedAt: number;
  deadlineAt: number;
  /** Set once the job is failed: only the report to the coordinator is left to make. */
  failure?: { errorCode: string; message: string } | undefined;
  /**
   * Set (wall ms) once the coordinator cancelled the job or gave it to another miner: nothing is
   * left to run, submit or report; the entry only keeps a restart from doing any of that.
   */
  cancelledAt?: number | undefined;
}

const schema = z.object({
  jobId: z.string().min(1),
  payload: z.unknown(),
  constraints: z.unknown(),
  claimedAt: z.number(),
  deadlineAt: z.number(),
  failure: z.object({ errorCode: z.string(), message: z.string() }).optional(),
  cancelledAt: z.number().optional(),
});

export class ClaimJournal extends DurableRecords<ClaimedJob> {
  constructor(dir: string) {
    super(dir, schema);
  }

  /** Throws at once (not in the promise) on a job that cannot be serialized. */
  record(job: ClaimedJob): Promise<void> {
    return this.store.put(job.jobId, job);
  }

  /**
   * Record that the coordinator no longer runs this job for us (it replaces the claim): durable
   * before it resolves, so a restart neither resumes nor submits it.
   */
  recordCancelled(jobId: string, at: number): Promise<void> {
    return this.store.put(jobId, {
      jobId,
      payload: null,
      constraints: null,
      claimedAt: at,
      deadlineAt: at,
      cancelledAt: at,
    });
  }

  /**
   * Remove the entry only while it still records a failure verdict: once that verdict is
   * acknowledged, a later hand-out of the same id (journaled without one) must not lose its entry.
   */
  removeFailure(jobId: string): Promise<void> {
    return this.store.removeIf(jobId, (current) => current === null || current.failure !== undefined);
  }

  /**
   * Remove the claim of a job whose result the coordinator has settled (accepted, or gone): kept
   * when its result could not be written to the outbox. Only while it is still that hand-out's
   * claim: not a failure verdict, not the claim of a later hand-out of the same id.
   */
  removeSettledClaim(jobId: string, completedAt: number): Promise<void> {
    return this.store.removeIf(
      jobId,
      (c) => c !== null && c.failure === undefined && c.claimedAt <= completedAt,
    );
  }

  async entries(): Promise<{ jobs: ClaimedJob[]; corrupt: CorruptRecord[] }> {
    const { entries, corrupt } = await this.store.list();
    return { jobs: entries.map((e) => e.value), corrupt };
  }
}
