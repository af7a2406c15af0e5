// Durable outbox (docs/architecture.md#durability-rules): a computed result is on disk before its first submit and leaves
// only when the coordinator acknowledged it (or said the job is gone).

import { promises as fs } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import type { CompletedJob } from "../coordinator/types.js";
import { DurableRecords } from "./durable-records.js";
import type { CorruptRecord } from "./durable-store.js";

const completedJobSchema = z.object({
  jobId: z.string().min(1),
  output: z.string(),
  model: z.string(),
  promptTokens: z.number(),
  completionTokens: z.number(),
  executionTimeS: z.number(),
  startedAt: z.number(),
  completedAt: z.number(),
  metrics: z.object({
    duration_ms: z.number(),
    gpu_utilization: z.number().nullable(),
    memory_used: z.number().nullable(),
    memory_peak: z.number().nullable(),
    units: z.number(),
    unit_type: z.literal("tokens"),
  }),
  receipt: z.record(z.string(), z.unknown()),
});

export class Outbox extends DurableRecords<CompletedJob> {
  constructor(dir: string) {
    super(dir, completedJobSchema);
  }

  put(result: CompletedJob): Promise<void> {
    return this.store.put(result.jobId, result);
  }

  has(jobId: string): Promise<boolean> {
    return this.store.has(jobId);
  }

  async pending(): Promise<{ results: CompletedJob[]; corrupt: CorruptRecord[] }> {
    const { entries, corrupt } = await this.store.list();
    return { results: entries.map((e) => e.value), corrupt };
  }

  depth(): Promise<number> {
    return this.store.count();
  }

  /** A result the coordinator refused outright (a 4xx that retrying cannot fix): kept for the operator. */
  async reject(result: CompletedJob, reason: string): Promise<string> {
    const dir = join(this.dir, "rejected");
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    const path = join(
      dir,
      `${Date.now()}-${result.jobId.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 80)}.json`,
    );
    await fs.writeFile(path, JSON.stringify({ reason, result }, null, 2), { mode: 0o600 });
    await this.store.remove(result.jobId);
    return path;
  }
}
