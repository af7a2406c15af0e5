// What a miner tells ops tooling as it works: one event per job verdict, result delivery and
// poll. In a multi-GPU host the workers send these to the supervisor over IPC, so the shapes are
// plain JSON and validated on arrival (see parseMinerEvent).
import { z } from "zod";

export type PollResult = "job" | "empty" | "unusable" | "rate_limited" | "error";

export type MinerEvent =
  | { type: "job_completed"; durationMs: number; completionTokens: number }
  | { type: "job_failed"; errorCode: string }
  | { type: "result_delivered"; answer: "accepted" | "already_done" | "gone" | "rejected" }
  | { type: "poll"; result: PollResult };

const eventSchema = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("job_completed"),
    durationMs: z.number().nonnegative().max(1e9),
    completionTokens: z.number().int().nonnegative().max(1e9),
  }),
  z.object({ type: z.literal("job_failed"), errorCode: z.string().min(1).max(64) }),
  z.object({
    type: z.literal("result_delivered"),
    answer: z.enum(["accepted", "already_done", "gone", "rejected"]),
  }),
  z.object({
    type: z.literal("poll"),
    result: z.enum(["job", "empty", "unusable", "rate_limited", "error"]),
  }),
]);

export function parseMinerEvent(v: unknown): MinerEvent | null {
  const r = eventSchema.safeParse(v);
  return r.success ? r.data : null;
}
