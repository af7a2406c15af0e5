// What a miner tells ops tooling as it works: one event per job verdict, result delivery and
// poll. In a multi-GPU host the workers send these to the supervisor over IPC, so the shapes are
// plain JSON and validated on arrival (see parseMinerEvent).
import { z } from "zod";

// The schema is the one definition: the types below are inferred from it.
const pollResults = ["job", "empty", "unusable", "rate_limited", "error"] as const;
const inferenceBackends = ["cuda", "vulkan", "metal", "cpu", "external"] as const;

export type PollResult = (typeof pollResults)[number];
export type InferenceBackend = (typeof inferenceBackends)[number];

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
    /** Accepted: the units billed and what they earned (price x units), when known. */
    units: z.number().nonnegative().max(1e12).optional(),
    amount: z.number().nonnegative().max(1e15).optional(),
  }),
  z.object({ type: z.literal("poll"), result: z.enum(pollResults) }),
  z.object({ type: z.literal("job_cancelled"), stage: z.enum(["running", "delivering"]) }),
  /** Once at start: what inference computes on (src/gpu/compute-verdict.ts), as advertised. */
  z.object({
    type: z.literal("inference_runtime"),
    backend: z.enum(inferenceBackends),
    platform: z.string().min(1).max(16),
    devices: z.array(z.string().max(256)).max(64),
  }),
]);

export type MinerEvent = z.infer<typeof eventSchema>;

export function parseMinerEvent(v: unknown): MinerEvent | null {
  const r = eventSchema.safeParse(v);
  return r.success ? r.data : null;
}
