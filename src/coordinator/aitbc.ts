// The `aitbc` dialect (docs/protocols.md): /v1/miners/* with X-Api-Key + X-Miner-ID.
import { z } from "zod";
import { DialectClient, type DialectOptions } from "./dialect.js";
import { CoordinatorError, UnusableJobError } from "./errors.js";
import type { HttpRequest, HttpResponse } from "./http.js";
import { isValidJobId, jobSegment, minerSegment } from "./ids.js";
import { rawMemberText, topLevelStringMember } from "./json-span.js";
import type {
  Capabilities,
  CompletedJob,
  CoordinatorClient,
  HeartbeatInfo,
  Job,
  SubmitAck,
} from "./types.js";

/** `unitPrice`: per GPU second, sent with each result as `metrics.unit_price`; absent: upstream bills 0.02. */
export type AitbcOptions = DialectOptions;

const registerAnswer = z.looseObject({
  status: z.string().optional(),
  session_token: z.string().max(8192).optional(),
});
const pollAnswer = z.looseObject({
  job_id: z.string().min(1),
  payload: z.unknown(),
  constraints: z.unknown().optional(),
});
const resultAnswer = z.looseObject({ status: z.string().optional(), receipt: z.unknown().optional() });
/** Upstream's JobView, as far as the miner reads it; the catch-all answer carries `error`. */
const jobListAnswer = z.looseObject({
  jobs: z.array(
    z.looseObject({
      job_id: z.string().min(1),
      state: z.string(),
      assigned_miner_id: z.string().nullish(),
    }),
  ),
  error: z.unknown().optional(),
});

/** Jobs asked per page of the listing, and the most pages read (a longer list is not trusted). */
const LIST_PAGE = 100;
const LIST_MAX_PAGES = 50;

/**
 * The metrics the AITBC coordinator prices: upstream bills `units` x `unit_price` (0.02 when
 * absent) with `unit_type` defaulting to gpu_seconds, and signs `started_at = completed_at - units`
 * (seconds); its reference miner sends only duration_ms. So units are the job's GPU seconds, and
 * the token counts travel in their own fields. (The miner's own receipt keeps units = tokens: that
 * is the receipt scheme, checked against the reference vectors.) No `price` is sent: upstream would
 * take it as the job's whole bill instead of units x unit_price.
 */
export function pricedMetrics(result: CompletedJob, unitPrice?: number): Record<string, unknown> {
  const m = result.metrics;
  return {
    duration_ms: m.duration_ms,
    units: billedUnits(result),
    unit_type: "gpu_seconds",
    ...(unitPrice !== undefined ? { unit_price: unitPrice } : {}),
    gpu_utilization: m.gpu_utilization,
    memory_used: m.memory_used,
    memory_peak: m.memory_peak,
    prompt_tokens: result.promptTokens,
    completion_tokens: result.completionTokens,
    tokens: result.promptTokens + result.completionTokens,
  };
}

/** The units a result bills: its GPU seconds (what earnings reports and /metrics count too). */
export function billedUnits(result: Pick<CompletedJob, "metrics">): number {
  return result.metrics.duration_ms / 1000;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function describeIssue(err: z.ZodError): string {
  const issue = err.issues[0];
  return issue ? `${issue.path.join(".") || "(root)"}: ${issue.message}` : "wrong shape";
}

export class AitbcClient extends DialectClient implements CoordinatorClient {
  /** Issued by register; sent as a bearer token only when neither an API key nor a token is configured. */
  private sessionToken: string | null = null;

  constructor(private readonly o: AitbcOptions) {
    super(o.http, o.dialect);
  }

  protected headers(): Record<string, string> {
    const h: Record<string, string> = { "x-miner-id": this.o.minerId };
    if (this.o.apiKey) h["x-api-key"] = this.o.apiKey;
    const bearer = this.o.bearerToken ?? (this.o.apiKey ? null : this.sessionToken);
    if (bearer) h["authorization"] = `Bearer ${bearer}`;
    return h;
  }

  secrets(): string[] {
    return [this.o.apiKey, this.o.bearerToken, this.sessionToken].filter((s): s is string => !!s);
  }

  async register(capabilities: Capabilities, concurrency: number): Promise<void> {
    const region = this.o.region ?? capabilities.region;
    // capabilities.price is what upstream matches a job's max_price against (set by compose).
    const body: Record<string, unknown> = { capabilities, concurrency };
    if (region) body["region"] = region;
    const { req, res } = await this.expectOk({ method: "POST", path: "/v1/miners/register", json: body });
    const answer = res.text.trim() === "" ? {} : this.o.http.parse(req, res, registerAnswer);
    if (answer.session_token) this.sessionToken = answer.session_token;
    this.o.log.debug({ minerId: this.o.minerId, concurrency }, "registered with coordinator");
  }

  async heartbeat(info: HeartbeatInfo): Promise<void> {
    await this.expectOk({
      method: "POST",
      path: "/v1/miners/heartbeat",
      json: { inflight: info.inflight, status: "ONLINE", metadata: info.metadata },
    });
  }

  async poll(maxWaitSeconds: number, signal?: AbortSignal): Promise<Job | null> {
    const wait = Math.max(0, Math.floor(maxWaitSeconds));
    let exchange: { req: HttpRequest; res: HttpResponse };
    try {
      exchange = await this.expectOk({
        method: "POST",
        path: "/v1/miners/poll",
        json: { max_wait_seconds: wait },
        // A coordinator that holds the poll may answer only after `wait`: that is not a timeout.
        timeoutMs: wait > 0 ? this.o.http.timeoutMs + wait * 1000 : undefined,
        signal,
        keepHeadOnOverflow: true,
      });
    } catch (err) {
      // A 200 too large to read is still a job handed over: name it so it can be failed back.
      const jobId =
        err instanceof CoordinatorError && err.status === 200 && err.bodyHead !== undefined
          ? topLevelStringMember(err.bodyHead, "job_id")
          : null;
      if (jobId !== null) throw new UnusableJobError(jobId, "payload_too_large", (err as Error).message);
      throw err;
    }
    const { req, res } = exchange;
    if (res.status === 204 || res.text.trim() === "" || res.text.trim() === "null") return null;
    const parsed = pollAnswer.safeParse(safeJson(res.text));
    if (!parsed.success) {
      const jobId = topLevelStringMember(res.text, "job_id");
      if (jobId !== null && jobId !== "") {
        throw new UnusableJobError(
          jobId,
          "invalid_payload",
          `the job's answer is not a valid job (${describeIssue(parsed.error)})`,
        );
      }
      return this.o.http.parse(req, res, pollAnswer) as never; // throws the usual bad_response
    }
    const job = parsed.data;
    const rawId: string = job.job_id;
    if (!isValidJobId(job.job_id)) {
      throw new UnusableJobError(
        rawId,
        "invalid_job_id",
        `job id ${JSON.stringify(rawId.slice(0, 80))} is not a valid id (letters, digits and ._:@~+=-, at most 200)`,
      );
    }
    return { jobId: job.job_id, payload: job.payload, constraints: job.constraints ?? {} };
  }

  async submit(result: CompletedJob): Promise<SubmitAck> {
    const body = {
      result: {
        status: "completed",
        output: result.output,
        execution_time: result.executionTimeS,
        model: result.model,
        tokens_processed: result.promptTokens + result.completionTokens,
        prompt_tokens: result.promptTokens,
        completion_tokens: result.completionTokens,
        receipt: result.receipt,
      },
      metrics: pricedMetrics(result, this.o.unitPrice),
    };
    const { req, res } = await this.expectOk({
      method: "POST",
      path: `/v1/miners/${jobSegment(result.jobId)}/result`,
      json: body,
    });
    const billed = {
      units: billedUnits(result),
      unitType: "gpu_seconds",
      unitPrice: this.o.unitPrice ?? null,
    };
    if (res.text.trim() === "") return { status: res.status, coordinatorReceiptText: null, billed };
    const answer = this.o.http.parse(req, res, resultAnswer);
    let receiptText: string | null = null;
    if (answer.receipt !== undefined && answer.receipt !== null) {
      receiptText = rawMemberText(res.text, "receipt");
      if (receiptText === null) {
        throw new CoordinatorError(
          "bad_response",
          `${req.method} ${req.path}: receipt could not be extracted`,
          res.status,
        );
      }
    }
    return { status: res.status, coordinatorReceiptText: receiptText, billed };
  }

  async fail(jobId: string, errorCode: string, errorMessage: string): Promise<void> {
    await this.expectOk({
      method: "POST",
      path: `/v1/miners/${jobSegment(jobId)}/fail`,
      // Upstream keeps only error_message (its error_code is dropped): the code leads the message.
      json: {
        error_code: errorCode,
        error_message: `${errorCode}: ${errorMessage}`.slice(0, 2000),
        metrics: {},
      },
    });
  }

  async runningJobs(signal?: AbortSignal): Promise<string[] | null> {
    const ids = new Set<string>();
    for (let page = 0; page < LIST_MAX_PAGES; page++) {
      const query = `job_status=RUNNING&limit=${LIST_PAGE}&offset=${page * LIST_PAGE}`;
      const { req, res } = await this.call({
        method: "POST",
        path: `/v1/miners/${minerSegment(this.o.minerId)}/jobs?${query}`,
        signal,
      });
      // An older coordinator without the route: no listing to go by.
      if (res.status === 404 || res.status === 405) return null;
      if (res.status < 200 || res.status >= 300) throw this.o.http.statusError(req, res);
      const parsed = jobListAnswer.safeParse(safeJson(res.text));
      // Not a listing (another service answering), or upstream's "Failed to list jobs" (an empty
      // list that means nothing): unknown, never "holds nothing".
      if (!parsed.success || parsed.data.error !== undefined) return null;
      for (const j of parsed.data.jobs) {
        // A coordinator that ignores the filter lists finished jobs too: only RUNNING ones for us count.
        if (j.state.toUpperCase() !== "RUNNING") continue;
        if (j.assigned_miner_id != null && j.assigned_miner_id !== this.o.minerId) continue;
        ids.add(j.job_id);
      }
      if (parsed.data.jobs.length < LIST_PAGE) return [...ids];
    }
    return null;
  }

  /** One listing answers for every job asked about: a cancel clears the job's miner upstream. */
  async jobsNoLongerOurs(jobIds: readonly string[], signal?: AbortSignal): Promise<string[] | null> {
    const running = await this.runningJobs(signal);
    if (running === null) return null;
    const ours = new Set(running);
    return jobIds.filter((id) => !ours.has(id));
  }

  async deregister(timeoutMs?: number): Promise<void> {
    const r = await this.call({
      method: "DELETE",
      path: `/v1/miners/${minerSegment(this.o.minerId)}`,
      timeoutMs,
    });
    // 404: the coordinator has already forgotten us, which is what deregistering asks for.
    if (r.res.status === 404 || (r.res.status >= 200 && r.res.status < 300)) return;
    throw this.o.http.statusError(r.req, r.res);
  }

  async close(): Promise<void> {
    await this.o.http.close();
  }
}
