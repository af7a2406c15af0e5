// Messages a worker sends its supervisor over the IPC channel: ops events as they happen, and
// its gauges and health once a second. Plain JSON, validated on arrival like any other input.
import { z } from "zod";
import { type MinerEvent, parseMinerEvent } from "../ops/events.js";
import type { WorkerGauges } from "../ops/metrics.js";

export interface WorkerHealth {
  live: boolean;
  ready: boolean;
  reasons: string[];
}

export type WorkerMessage =
  | { t: "event"; e: MinerEvent }
  | { t: "status"; gauges: WorkerGauges; health: WorkerHealth };

const status = z.object({
  t: z.literal("status"),
  gauges: z.object({
    inflight: z.number().int().nonnegative(),
    pendingSubmissions: z.number().int().nonnegative(),
    outboxFiles: z.number().int().nonnegative(),
    stateWritable: z.boolean(),
    registered: z.boolean(),
    servableModels: z.number().int().nonnegative(),
  }),
  health: z.object({
    live: z.boolean(),
    ready: z.boolean(),
    reasons: z.array(z.string().max(2000)).max(100),
  }),
});

export function parseWorkerMessage(v: unknown): WorkerMessage | null {
  if (typeof v !== "object" || v === null) return null;
  if ((v as { t?: unknown }).t === "event") {
    const e = parseMinerEvent((v as { e?: unknown }).e);
    return e ? { t: "event", e } : null;
  }
  const r = status.safeParse(v);
  return r.success ? r.data : null;
}

/** Set in a worker's environment by the supervisor: which cards, which id, where its state lives. */
export const WORKER_ENV = "AITBC_WORKER";

const workerEnv = z.object({
  key: z.string().min(1),
  minerId: z.string().min(1),
  stateDir: z.string().min(1),
  hostStateDir: z.string().min(1),
  uuids: z.array(z.string().min(1)).min(1),
});
export type WorkerEnv = z.infer<typeof workerEnv>;

export function readWorkerEnv(env: NodeJS.ProcessEnv = process.env): WorkerEnv | null {
  const raw = env[WORKER_ENV];
  if (!raw) return null;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw new Error(`${WORKER_ENV} is not valid JSON (it is set by the supervisor; do not set it by hand)`);
  }
  const r = workerEnv.safeParse(v);
  if (!r.success) throw new Error(`${WORKER_ENV} has an unexpected shape (it is set by the supervisor)`);
  return r.data;
}
