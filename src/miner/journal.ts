// Claim journal (docs/architecture.md#durability-rules): a job is on disk from the moment it is ours until it has a result in
// the outbox or was reported failed, so a restart knows what it had taken on.
import { z } from "zod";
import { type CorruptRecord, DurableStore } from "./durable-store.js";

export interface ClaimedJob {
  jobId: string;
  payload: unknown;
  constraints: unknown;
  claimedAt: number;
  deadlineAt: number;
  /** Set once the job is failed: only the report to the coordinator is left to make. */
  failure?: { errorCode: string; message: string } | undefined;
}

const schema = z.object({
  jobId: z.string().min(1),
  payload: z.unknown(),
  constraints: z.unknown(),
  claimedAt: z.number(),
  deadlineAt: z.number(),
  failure: z.object({ errorCode: z.string(), message: z.string() }).optional(),
});

export class ClaimJournal {
  private readonly store: DurableStore<ClaimedJob>;

  constructor(readonly dir: string) {
    this.store = new DurableStore(dir, (v) => {
      const r = schema.safeParse(v);
      return r.success ? (r.data as ClaimedJob) : null;
    });
  }

  open(): Promise<void> {
    return this.store.open();
  }

  close(): Promise<void> {
    return this.store.close();
  }

  /** fsyncs made so far (file, directory): the bench reports them per job. */
  fsyncCounts(): { files: number; dirs: number } {
    return this.store.fsyncCounts();
  }

  /** Throws at once (not in the promise) on a job that cannot be serialized. */
  record(job: ClaimedJob): Promise<void> {
    return this.store.put(job.jobId, job);
  }

  remove(jobId: string): Promise<void> {
    return this.store.remove(jobId);
  }

  /**
   * Remove the entry only while it still records a failure verdict: once that verdict is
   * acknowledged, a later hand-out of the same id (journaled without one) must not lose its entry.
   */
  removeFailure(jobId: string): Promise<void> {
    return this.store.removeIf(jobId, (current) => current === null || current.failure !== undefined);
  }

  async entries(): Promise<{ jobs: ClaimedJob[]; corrupt: CorruptRecord[] }> {
    const { entries, corrupt } = await this.store.list();
    return { jobs: entries.map((e) => e.value), corrupt };
  }
}
