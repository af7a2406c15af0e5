// The `claim` dialect (docs/protocols.md, the seed tutorial): list an available job, claim it, complete
// it. It has no heartbeat, fail or deregister calls: those resolve without a request.
import { z } from "zod";
import { DialectClient, type DialectOptions } from "./dialect.js";
import { isValidJobId, jobSegment } from "./ids.js";
import { rawMemberText } from "./json-span.js";
import type { Capabilities, CompletedJob, CoordinatorClient, Job, SubmitAck } from "./types.js";

export type ClaimOptions = DialectOptions;

const availableJob = z.looseObject({ job_id: z.string().refine(isValidJobId, "invalid job id") });
const anyJson = z.unknown();
/** A job's view (`GET /v1/jobs/{id}`): upstream's `state`, or the tutorial's `status`. */
const jobView = z.looseObject({
  job_id: z.string(),
  state: z.string().max(64).optional(),
  status: z.string().max(64).optional(),
  assigned_miner_id: z.string().nullish(),
});

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** nvidia-smi's `memory.total` CSV form, as the seed sends it. */
function gpuInfo(c: Capabilities): { name: string; memory: string } {
  const gpu = c.gpus[0];
  if (!gpu) return { name: c.platform === "CPU" ? "CPU" : "Unknown", memory: "Unknown" };
  return { name: gpu.name, memory: gpu.memory_mb === null ? "Unknown" : `${gpu.memory_mb} MiB` };
}

export class ClaimClient extends DialectClient implements CoordinatorClient {
  constructor(private readonly o: ClaimOptions) {
    super(o.http, o.dialect);
  }

  secrets(): string[] {
    return [this.o.apiKey, this.o.bearerToken].filter((s): s is string => !!s);
  }

  protected headers(): Record<string, string> {
    const h: Record<string, string> = { "x-miner-id": this.o.minerId };
    if (this.o.apiKey) h["x-api-key"] = this.o.apiKey;
    if (this.o.bearerToken) h["authorization"] = `Bearer ${this.o.bearerToken}`;
    return h;
  }

  async register(capabilities: Capabilities, _concurrency: number): Promise<void> {
    await this.expectOk({
      method: "POST",
      path: "/v1/miners/register",
      json: { miner_id: this.o.minerId, capabilities: capabilities.models, gpu_info: gpuInfo(capabilities) },
    });
    this.o.log.debug({ minerId: this.o.minerId }, "registered with coordinator (claim dialect)");
  }

  /** The claim dialect has no heartbeat: nothing to send. */
  async heartbeat(): Promise<void> {}

  async poll(_maxWaitSeconds: number, signal?: AbortSignal): Promise<Job | null> {
    // An unusable listing is not ours yet (nothing claimed): it is skipped, never failed.
    const listing = await this.call({
      method: "GET",
      path: `/v1/jobs/available?miner_id=${encodeURIComponent(this.o.minerId)}`,
      signal,
    });
    const { status, text } = listing.res;
    if (status === 204 || status === 404) return null;
    if (status < 200 || status >= 300) throw this.o.http.statusError(listing.req, listing.res);
    if (text.trim() === "") return null;
    const value = this.o.http.parse(listing.req, listing.res, anyJson);
    if (
      value === null ||
      (typeof value === "object" && !Array.isArray(value) && Object.keys(value).length === 0)
    ) {
      return null;
    }
    const job = this.o.http.parse(listing.req, listing.res, availableJob);
    const claim = await this.call({
      method: "POST",
      path: `/v1/jobs/${jobSegment(job.job_id)}/claim`,
      json: { miner_id: this.o.minerId },
    });
    // 409: another miner won the claim; 404: the job vanished in between. Either way, not ours.
    if (claim.res.status === 409 || claim.res.status === 404) {
      this.o.log.debug({ jobId: job.job_id, status: claim.res.status }, "claim lost");
      return null;
    }
    if (claim.res.status < 200 || claim.res.status >= 300)
      throw this.o.http.statusError(claim.req, claim.res);
    const { job_id: jobId, ...payload } = job;
    return { jobId, payload, constraints: {} };
  }

  async submit(result: CompletedJob): Promise<SubmitAck> {
    const { res } = await this.expectOk({
      method: "POST",
      path: `/v1/jobs/${jobSegment(result.jobId)}/complete`,
      json: {
        miner_id: this.o.minerId,
        result: result.output,
        completed_at: new Date(result.completedAt).toISOString(),
        receipt: result.receipt,
      },
    });
    // The tutorial coordinator sends no receipt; take one losslessly if a variant does.
    return { status: res.status, coordinatorReceiptText: rawMemberText(res.text, "receipt") };
  }

  /**
   * Each job's own view: one no longer RUNNING, or RUNNING for another miner, is no longer ours.
   * A job the coordinator does not show (404: no such route, or no such job; not a job view) is
   * left alone: only a positive answer stops work. null when no job could be asked about.
   */
  async jobsNoLongerOurs(jobIds: readonly string[], signal?: AbortSignal): Promise<string[] | null> {
    const gone: string[] = [];
    let answered = false;
    for (const id of jobIds) {
      const { req, res } = await this.call({ method: "GET", path: `/v1/jobs/${jobSegment(id)}`, signal });
      if (res.status === 429 || res.status >= 500) throw this.o.http.statusError(req, res);
      if (res.status < 200 || res.status >= 300) continue;
      const v = jobView.safeParse(parseJson(res.text));
      const state = v.success ? (v.data.state ?? v.data.status) : undefined;
      if (!v.success || v.data.job_id !== id || state === undefined) continue;
      answered = true;
      const holder = v.data.assigned_miner_id;
      if (state.toUpperCase() !== "RUNNING" || (holder != null && holder !== this.o.minerId)) gone.push(id);
    }
    return answered ? gone : null;
  }

  /** No fail call in this dialect: the job's claim simply lapses on the coordinator. */
  async fail(): Promise<void> {}

  /** No deregister call in this dialect. */
  async deregister(): Promise<void> {}

  async close(): Promise<void> {
    await this.o.http.close();
  }
}
