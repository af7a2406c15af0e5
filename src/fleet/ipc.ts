// Messages between a worker and its supervisor over the IPC channel: ops events as they happen,
// its gauges and health once a second, and the host's poll budget (a worker asks for polls and
// waits for the grant; a 429 it sees holds the whole host). Plain JSON, validated on arrival like
// any other input, both ways.
import { z } from "zod";
import { type MinerHealth, minerHealthSchema } from "../miner/health.js";
import { type MinerEvent, parseMinerEvent } from "../ops/events.js";
import { type WorkerGauges, workerGaugesSchema } from "../ops/metrics.js";

/** A worker's health is its miner's (one shape, src/miner/health.ts). */
export type WorkerHealth = MinerHealth;

export type WorkerMessage =
  | { t: "event"; e: MinerEvent }
  | { t: "status"; gauges: WorkerGauges; health: WorkerHealth }
  | PollMessage;

/** A worker's side of the host's poll budget (src/fleet/poll-share.ts). */
export type PollMessage =
  /** Polls wanted (one when idle, one per free slot in a backlog): answered by a grant. */
  | { t: "poll_ask"; id: number; want: number; backlog: boolean }
  /** The worker no longer waits for this request (it is stopping). */
  | { t: "poll_cancel"; id: number }
  /** A poll of this worker was answered 429 (with the Retry-After, if any). */
  | { t: "poll_429"; retryAfterMs: number | null };

/** The supervisor's answer to a poll_ask: `n` polls may go now. */
export interface PollGrantMessage {
  t: "poll_grant";
  id: number;
  n: number;
}

const requestId = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const pollMessage = z.discriminatedUnion("t", [
  z.object({
    t: z.literal("poll_ask"),
    id: requestId,
    want: z.number().int().min(1).max(1024),
    backlog: z.boolean(),
  }),
  z.object({ t: z.literal("poll_cancel"), id: requestId }),
  z.object({ t: z.literal("poll_429"), retryAfterMs: z.number().nonnegative().max(86_400_000).nullable() }),
]);
const pollGrant = z.object({
  t: z.literal("poll_grant"),
  id: requestId,
  n: z.number().int().min(1).max(1024),
});

/** The supervisor drained this worker's card (src/fleet/gpu-drain.ts): stop, deregister, exit. */
export interface DrainMessage {
  t: "drain";
  reason: string;
  /** The card cannot finish running jobs (lost, sick): fail them as gpu_unavailable now. */
  failRunning: boolean;
}
const drain = z.object({
  t: z.literal("drain"),
  reason: z.string().min(1).max(2000),
  failRunning: z.boolean(),
});

/** A message from the supervisor (a worker's side): null when it is not one. */
export function parseSupervisorMessage(v: unknown): PollGrantMessage | null {
  const r = pollGrant.safeParse(v);
  return r.success ? r.data : null;
}

/** A drain from the supervisor (a worker's side): null when it is not one. */
export function parseDrainMessage(v: unknown): DrainMessage | null {
  const r = drain.safeParse(v);
  return r.success ? r.data : null;
}

const status = z.object({
  t: z.literal("status"),
  gauges: workerGaugesSchema,
  health: minerHealthSchema,
});

export function parseWorkerMessage(v: unknown): WorkerMessage | null {
  if (typeof v !== "object" || v === null) return null;
  if ((v as { t?: unknown }).t === "event") {
    const e = parseMinerEvent((v as { e?: unknown }).e);
    return e ? { t: "event", e } : null;
  }
  const t = (v as { t?: unknown }).t;
  if (typeof t === "string" && t.startsWith("poll_")) {
    const p = pollMessage.safeParse(v);
    return p.success ? p.data : null;
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
