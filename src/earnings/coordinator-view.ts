// The coordinator's own view of a miner's earnings, where it offers one (upstream's routes):
// `POST /v1/miners/{id}/earnings` (sums escrow payments: 0 without them), the miner's completed
// jobs `POST /v1/miners/{id}/jobs?job_status=COMPLETED` (every page), and
// `GET /v1/reputation/trust-score/{id}`. Each answer is validated; a route the coordinator does
// not have (404/405) is reported as absent, not as an error of the others.
import { z } from "zod";
import { HttpClient, type HttpRequest } from "../coordinator/http.js";
import { minerSegment } from "../coordinator/ids.js";
import type { Issue } from "./report.js";

export interface CoordinatorAuth {
  baseUrl: string;
  apiKey?: string | undefined;
  bearerToken?: string | undefined;
  timeoutMs?: number | undefined;
}

const earningsAnswer = z.looseObject({
  total_earnings: z.number().nonnegative().optional(),
  pending_earnings: z.number().nonnegative().optional(),
  paid_earnings: z.number().nonnegative().optional(),
  completed_jobs: z.number().int().nonnegative().optional(),
  currency: z.string().max(32).optional(),
  error: z.unknown().optional(),
});
const jobsAnswer = z.looseObject({
  jobs: z.array(z.looseObject({ job_id: z.string().min(1).max(200), state: z.string().max(32) })),
  error: z.unknown().optional(),
});
const trustAnswer = z.looseObject({
  composite_score: z.number(),
  reputation_level: z.string().max(64).optional(),
});

/** One part of the view: its value, or why there is none. */
export type Part<T> = { ok: true; value: T } | { ok: false; reason: string };

export interface MinerView {
  minerId: string;
  earnings: Part<{
    total: number;
    pending: number | null;
    paid: number | null;
    completedJobs: number | null;
    currency: string | null;
  }>;
  completedJobs: Part<string[]>;
  trustScore: Part<{ composite: number; level: string | null }>;
}

const PAGE = 100;
const MAX_PAGES = 100;

export class CoordinatorView {
  private readonly http: HttpClient;

  constructor(private readonly auth: CoordinatorAuth) {
    this.http = new HttpClient({
      baseUrl: auth.baseUrl,
      timeoutMs: auth.timeoutMs ?? 15_000,
      secrets: () => [auth.apiKey, auth.bearerToken].filter((s): s is string => !!s),
    });
  }

  private async ask<T>(
    minerId: string,
    req: Omit<HttpRequest, "headers">,
    schema: z.ZodType<T>,
  ): Promise<Part<T>> {
    const headers: Record<string, string> = { "x-miner-id": minerId };
    if (this.auth.apiKey) headers["x-api-key"] = this.auth.apiKey;
    if (this.auth.bearerToken) headers["authorization"] = `Bearer ${this.auth.bearerToken}`;
    try {
      const full = { ...req, headers };
      const res = await this.http.send(full);
      if (res.status === 404 || res.status === 405)
        return { ok: false, reason: "not offered (HTTP 404/405)" };
      if (res.status < 200 || res.status >= 300) return { ok: false, reason: `HTTP ${res.status}` };
      let json: unknown;
      try {
        json = JSON.parse(res.text);
      } catch {
        return { ok: false, reason: "the answer is not JSON" };
      }
      const parsed = schema.safeParse(json);
      if (!parsed.success) {
        const i = parsed.error.issues[0];
        return {
          ok: false,
          reason: `unexpected answer (${i ? `${i.path.join(".") || "(root)"}: ${i.message}` : "shape"})`,
        };
      }
      return { ok: true, value: parsed.data };
    } catch (err) {
      return { ok: false, reason: (err as Error).message };
    }
  }

  async miner(minerId: string): Promise<MinerView> {
    const seg = minerSegment(minerId);
    const e = await this.ask(minerId, { method: "POST", path: `/v1/miners/${seg}/earnings` }, earningsAnswer);
    const earnings: MinerView["earnings"] = !e.ok
      ? e
      : e.value.error !== undefined
        ? { ok: false, reason: "the coordinator answered with an error" }
        : {
            ok: true,
            value: {
              total: e.value.total_earnings ?? 0,
              pending: e.value.pending_earnings ?? null,
              paid: e.value.paid_earnings ?? null,
              completedJobs: e.value.completed_jobs ?? null,
              currency: e.value.currency ?? null,
            },
          };
    const t = await this.ask(
      minerId,
      { method: "GET", path: `/v1/reputation/trust-score/${seg}` },
      trustAnswer,
    );
    const trustScore: MinerView["trustScore"] = t.ok
      ? { ok: true, value: { composite: t.value.composite_score, level: t.value.reputation_level ?? null } }
      : t;
    return { minerId, earnings, completedJobs: await this.completed(minerId, seg), trustScore };
  }

  private async completed(minerId: string, seg: string): Promise<Part<string[]>> {
    const ids: string[] = [];
    for (let page = 0; page < MAX_PAGES; page++) {
      const q = `job_status=COMPLETED&limit=${PAGE}&offset=${page * PAGE}`;
      const r = await this.ask(minerId, { method: "POST", path: `/v1/miners/${seg}/jobs?${q}` }, jobsAnswer);
      if (!r.ok) return r;
      if (r.value.error !== undefined)
        return { ok: false, reason: "the coordinator could not list its jobs" };
      // A coordinator that ignores the filter lists other states too: only COMPLETED ones count.
      for (const j of r.value.jobs) if (j.state.toUpperCase() === "COMPLETED") ids.push(j.job_id);
      if (r.value.jobs.length < PAGE) return { ok: true, value: ids };
    }
    return { ok: false, reason: `over ${PAGE * MAX_PAGES} jobs listed: not compared` };
  }

  close(): Promise<void> {
    return this.http.close();
  }
}

/**
 * The coordinator's completed jobs against the receipts held here: a job it lists as completed
 * for this miner that left no receipt here, and one it signed a receipt for that it does not list.
 */
export function compareJobs(
  view: MinerView,
  gpu: string,
  minerJobs: ReadonlySet<string>,
  receiptJobs: ReadonlySet<string>,
): Issue[] {
  if (!view.completedJobs.ok) return [];
  const listed = new Set(view.completedJobs.value);
  /** One issue for each id of `ids` that `other` lacks. */
  const lacking = (ids: Iterable<string>, other: ReadonlySet<string>, kind: Issue["kind"], detail: string) =>
    [...ids].filter((id) => !other.has(id)).map<Issue>((id) => ({ kind, gpu, jobId: id, detail }));
  return [
    ...lacking(
      listed,
      minerJobs,
      "missing_receipt",
      `the coordinator lists it as completed by ${view.minerId}; no receipt here`,
    ),
    ...lacking(
      receiptJobs,
      listed,
      "unmatched_receipt",
      `signed by the coordinator, but not among ${view.minerId}'s completed jobs there`,
    ),
  ];
}
