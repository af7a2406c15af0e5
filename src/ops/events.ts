// What a miner tells ops tooling as it works: one event per job verdict, result delivery and
// poll. In a multi-GPU host the workers send these to the supervisor over IPC, so the shapes are
// plain JSON and validated on arrival (see parseMinerEvent).
import { z } from "zod";

export type PollResult = "job" | "empty" | "unusable" | "rate_limited" | "error";

export type MinerEvent =
  | { type: "job_completed"; durationMs: number; completionTokens: number }
  | { type: "job_failed"; errorCode: string }
  | {
      type: "result_delivered";
      answer: "accepted" | "already_done" | "gone" | "rejected";
      /** Accepted: the units billed and what they earned (price x units), when known. */
      units?: number | undefined;
      amount?: number | undefined;
    }
  | { type: "poll"; result: PollResult }
  /** Once at start: what inference computes on (src/gpu/compute-verdict.ts), as advertised. */
  | { type: "inference_runtime"; backend: InferenceBackend; platform: string; devices: string[] };

export type InferenceBackend = "cuda" | "vulkan" | "metal" | "cpu" | "external";

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
    units: z.number().nonnegative().max(1e12).optional(),
    amount: z.number().nonnegative().max(1e15).optional(),
  }),
  z.object({
    type: z.literal("poll"),
    result: z.enum(["job", "empty", "unusable", "rate_limited", "error"]),
  }),
  z.object({
    type: z.literal("inference_runtime"),
    backend: z.enum(["cuda", "vulkan", "metal", "cpu", "external"]),
    platform: z.string().min(1).max(16),
    devices: z.array(z.string().max(256)).max(64),
  }),
]);

export function parseMinerEvent(v: unknown): MinerEvent | null {
  const r = eventSchema.safeParse(v);
  return r.success ? r.data : null;
}
