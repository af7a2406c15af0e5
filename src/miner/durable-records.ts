// What the claim journal and the outbox share: one DurableStore of validated records in a
// directory, and the same handles on it for the miner (open, close, the log a state probe checks,
// write faults, fsync counts, removal). Each subclass adds only its own records' meaning.
import { join } from "node:path";
import type { z } from "zod";
import { DurableStore, LOG_NAME } from "./durable-store.js";

export class DurableRecords<T> {
  protected readonly store: DurableStore<T>;

  /** `schema` checks each record read back; one that fails it is set aside as corrupt. */
  constructor(
    readonly dir: string,
    schema: z.ZodType,
  ) {
    this.store = new DurableStore(dir, (v) => {
      const r = schema.safeParse(v);
      return r.success ? (r.data as T) : null;
    });
  }

  open(): Promise<void> {
    return this.store.open();
  }

  close(): Promise<void> {
    return this.store.close();
  }

  /** The log a probe of the state must find appendable. */
  get logPath(): string {
    return join(this.dir, LOG_NAME);
  }

  /** Told of each write that failed, and its file (the miner then takes no job until it heals). */
  onFault(listener: (err: unknown, file: string) => void): void {
    this.store.onFault = listener;
  }

  /** fsyncs made so far (file, directory): the bench reports them per job. */
  fsyncCounts(): { files: number; dirs: number } {
    return this.store.fsyncCounts();
  }

  remove(jobId: string): Promise<void> {
    return this.store.remove(jobId);
  }
}
