// A host's state tree as a multi-GPU miner leaves it (the host directory and one
// workers/<uuid>/ per GPU), its receipts logs written with the repo's own receipt code: miner
// receipts signed with the miner's key, coordinator receipts signed as upstream signs them.
import { join } from "node:path";
import { stateFiles } from "../../src/paths.js";
import {
  buildMinerReceipt,
  ReceiptLog,
  type ReceiptLogEntry,
  type SigningKey,
  signPayload,
} from "../../src/receipts/index.js";

export interface JobSpec {
  jobId: string;
  minerId: string;
  model?: string;
  /** Unix seconds the job completed. */
  completedAt: number;
  durationMs: number;
  /** The unit price the miner asked (null: the dialect sent none); undefined: an old line without it. */
  unitPrice?: number | null;
}

export interface SignedSpec {
  units: number;
  unitPrice: number;
  price?: number;
  /** Changed after signing (the signature no longer holds). */
  tamper?: Record<string, unknown>;
  verified?: boolean | null;
}

export function workerDir(stateDir: string, uuid: string): string {
  return join(stateDir, "workers", uuid);
}

export class TreeWriter {
  private readonly logs = new Map<string, ReceiptLog>();

  constructor(
    readonly minerKey: SigningKey,
    readonly coordinatorKey: SigningKey,
  ) {}

  log(dir: string): ReceiptLog {
    let l = this.logs.get(dir);
    if (!l) {
      l = new ReceiptLog(stateFiles.receiptsLog(dir));
      this.logs.set(dir, l);
    }
    return l;
  }

  /** The miner's receipt line, as compose writes it (with what the result was billed at). */
  async job(dir: string, j: JobSpec): Promise<void> {
    const receipt = buildMinerReceipt(
      {
        jobId: j.jobId,
        minerId: j.minerId,
        model: j.model ?? "tiny",
        prompt: `prompt of ${j.jobId}`,
        output: `output of ${j.jobId}`,
        units: 7,
        startedAt: j.completedAt - Math.ceil(j.durationMs / 1000),
        completedAt: j.completedAt,
        durationMs: j.durationMs,
      },
      this.minerKey,
    );
    const entry: ReceiptLogEntry = {
      kind: "miner",
      jobId: j.jobId,
      receipt,
      verified: true,
      at: new Date(j.completedAt * 1000).toISOString(),
    };
    if (j.unitPrice !== undefined)
      entry.billed = { units: j.durationMs / 1000, unit_type: "gpu_seconds", unit_price: j.unitPrice };
    await this.log(dir).append(entry);
  }

  /** The coordinator's receipt for a job, signed as upstream signs it (model in metadata). */
  async signed(dir: string, j: JobSpec, s: SignedSpec): Promise<void> {
    const payload = {
      version: "1.0",
      receipt_id: `r-${j.jobId}`,
      job_id: j.jobId,
      provider: j.minerId,
      status: "COMPLETED",
      units: s.units,
      unit_type: "gpu_seconds",
      unit_price: s.unitPrice,
      price: s.price ?? Math.round(s.units * s.unitPrice * 1e6) / 1e6,
      completed_at: j.completedAt,
      started_at: Math.floor(j.completedAt - s.units),
      metadata: { job_payload: { model: j.model ?? "tiny", prompt: "p" } },
    };
    const receipt = { ...payload, signature: signPayload(payload, this.coordinatorKey), ...s.tamper };
    await this.log(dir).append({
      kind: "coordinator",
      jobId: j.jobId,
      receipt,
      verified: s.verified === undefined ? true : s.verified,
      at: new Date(j.completedAt * 1000 + 500).toISOString(),
    });
  }

  async failure(dir: string, jobId: string, errorCode: string, atMs: number): Promise<void> {
    await this.log(dir).append({
      kind: "failure",
      jobId,
      receipt: null,
      verified: null,
      reason: errorCode,
      at: new Date(atMs).toISOString(),
    });
  }

  async close(): Promise<void> {
    for (const l of this.logs.values()) await l.close();
  }
}
