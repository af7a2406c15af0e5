// The earnings report: every job of the host per day, GPU and model (jobs, units, unit price,
// amount, failures), and a reconciliation of what each result was billed at (the miner's own
// receipt and what it sent) against the coordinator's signed receipt for it.
import { stringifyJson } from "../receipts/json.js";
import { receiptModel } from "../receipts/receipt.js";
import { verifyCoordinatorReceipt } from "../receipts/verify.js";
import { billedFromMinerReceipt, numberOf } from "./earned.js";
import type { Ledger, LedgerEntry, StateSource } from "./ledger.js";

export type IssueKind =
  | "missing_receipt"
  | "units_mismatch"
  | "price_mismatch"
  | "bad_signature"
  | "unverified"
  | "duplicate_receipt"
  | "unmatched_receipt"
  | "invalid_entry"
  | "unreadable_line";

export const ISSUE_KINDS: readonly IssueKind[] = [
  "missing_receipt",
  "units_mismatch",
  "price_mismatch",
  "bad_signature",
  "unverified",
  "duplicate_receipt",
  "unmatched_receipt",
  "invalid_entry",
  "unreadable_line",
];

export interface Issue {
  kind: IssueKind;
  gpu: string | null;
  jobId: string | null;
  detail: string;
  file?: string | undefined;
  line?: number | undefined;
}

export interface EarningsRow {
  /** UTC day the job completed (YYYY-MM-DD). */
  day: string;
  gpu: string;
  model: string;
  jobs: number;
  units: number;
  /** The unit price every job of the row was billed at; null when none is known or they differ. */
  unitPrice: number | null;
  amount: number;
  /** Jobs whose amount is the coordinator's signed price (the rest: units x the price asked). */
  confirmed: number;
  /** Jobs with no price known at all (amount 0): e.g. the claim dialect. */
  unpriced: number;
  failures: number;
}

export interface SourceInfo extends StateSource {
  minerIds: string[];
}

export interface EarningsReport {
  stateDir: string;
  sources: SourceInfo[];
  rows: EarningsRow[];
  totals: { jobs: number; units: number; amount: number; confirmed: number; failures: number };
  reconciliation: { jobs: number; counts: Record<IssueKind, number>; issues: Issue[] };
}

export interface ReportOptions {
  /** Verify every coordinator receipt again with this key (else the verdict logged at the time). */
  coordinatorKey?: string | undefined;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** Sums of floats printed as the coordinator rounds a price (6 places). */
export const round6 = (n: number): number => Math.round(n * 1e6) / 1e6;

function close(a: number, b: number): boolean {
  return Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b));
}

function dayOf(unixSeconds: number | null, at: string | number): string {
  const ms = unixSeconds !== null ? unixSeconds * 1000 : typeof at === "number" ? at : Date.parse(at);
  return Number.isFinite(ms) ? new Date(ms).toISOString().slice(0, 10) : "unknown";
}

interface JobFacts {
  gpu: string;
  jobId: string;
  miner: LedgerEntry | null;
  coordinator: LedgerEntry[];
}

class Builder {
  readonly rows = new Map<string, EarningsRow & { prices: Set<number | null> }>();
  readonly issues: Issue[] = [];

  row(day: string, gpu: string, model: string): EarningsRow & { prices: Set<number | null> } {
    const key = JSON.stringify([day, gpu, model]);
    let r = this.rows.get(key);
    if (!r) {
      r = {
        day,
        gpu,
        model,
        jobs: 0,
        units: 0,
        unitPrice: null,
        amount: 0,
        confirmed: 0,
        unpriced: 0,
        failures: 0,
        prices: new Set(),
      };
      this.rows.set(key, r);
    }
    return r;
  }

  issue(i: Issue): void {
    this.issues.push(i);
  }
}

/** A miner receipt the report can use: its own job id, a model, the completion time and duration. */
function minerReceiptProblem(e: LedgerEntry): string | null {
  if (!isObj(e.receipt)) return "the miner receipt is not a JSON object";
  const r = e.receipt;
  if (r["job_id"] !== e.jobId) return `the receipt's job_id is not the line's job (${e.jobId})`;
  if (typeof r["model"] !== "string") return "the miner receipt has no model";
  if (numberOf(r["completed_at"]) === null) return "the miner receipt has no completed_at";
  if (numberOf(r["duration_ms"]) === null) return "the miner receipt has no duration_ms";
  return null;
}

function signatureVerdict(
  e: LedgerEntry,
  opts: ReportOptions,
): { verified: boolean | null; reason?: string } {
  if (!opts.coordinatorKey) return { verified: e.verified, ...(e.reason ? { reason: e.reason } : {}) };
  let text: string;
  try {
    text = stringifyJson(e.receipt as never);
  } catch {
    return { verified: false, reason: "the logged receipt cannot be serialised" };
  }
  const check = verifyCoordinatorReceipt(text, opts.coordinatorKey);
  return { verified: check.verified, ...(check.reason ? { reason: check.reason } : {}) };
}

function reconcileJob(b: Builder, job: JobFacts, opts: ReportOptions): void {
  const { gpu, jobId, miner } = job;
  const where = (e: LedgerEntry) => ({ file: e.file, line: e.line });
  const mr = miner && isObj(miner.receipt) ? miner.receipt : null;
  const billed = miner ? (miner.billed ?? billedFromMinerReceipt(mr, null) ?? null) : null;
  const coordinator = job.coordinator[0] ?? null;
  const cr = coordinator ? (coordinator.receipt as Obj) : null;

  if (miner && !coordinator)
    b.issue({ kind: "missing_receipt", gpu, jobId, detail: "no coordinator receipt", ...where(miner) });
  if (!miner && coordinator)
    b.issue({
      kind: "unmatched_receipt",
      gpu,
      jobId,
      detail: "a coordinator receipt for a job with no miner receipt here",
      ...where(coordinator),
    });
  for (const extra of job.coordinator.slice(1))
    b.issue({
      kind: "duplicate_receipt",
      gpu,
      jobId,
      detail: `coordinator receipt ${job.coordinator.indexOf(extra) + 1} for this job: it billed the result again`,
      ...where(extra),
    });
  for (const c of job.coordinator) {
    const v = signatureVerdict(c, opts);
    if (v.verified === false)
      b.issue({ kind: "bad_signature", gpu, jobId, detail: v.reason ?? "signature invalid", ...where(c) });
    else if (v.verified === null)
      b.issue({ kind: "unverified", gpu, jobId, detail: "not checked: no coordinator key", ...where(c) });
  }

  const cUnits = cr ? numberOf(cr["units"]) : null;
  const cUnitPrice = cr ? numberOf(cr["unit_price"]) : null;
  const cPrice = cr ? numberOf(cr["price"]) : null;
  if (coordinator && billed && cUnits !== null && !close(cUnits, billed.units))
    b.issue({
      kind: "units_mismatch",
      gpu,
      jobId,
      detail: `sent ${billed.units} ${billed.unit_type}, the coordinator signed ${cUnits}`,
      ...where(coordinator),
    });
  if (
    coordinator &&
    billed?.unit_price != null &&
    cUnitPrice !== null &&
    !close(cUnitPrice, billed.unit_price)
  )
    b.issue({
      kind: "price_mismatch",
      gpu,
      jobId,
      detail: `asked ${billed.unit_price} a unit, the coordinator signed ${cUnitPrice}`,
      ...where(coordinator),
    });
  else if (
    cUnits !== null &&
    cUnitPrice !== null &&
    cPrice !== null &&
    !close(cPrice, round6(cUnits * cUnitPrice))
  )
    b.issue({
      kind: "price_mismatch",
      gpu,
      jobId,
      detail: `the coordinator signed a price of ${cPrice}, not ${cUnits} units x ${cUnitPrice}`,
      ...(coordinator ? where(coordinator) : {}),
    });

  const day = dayOf(
    mr ? numberOf(mr["completed_at"]) : cr ? numberOf(cr["completed_at"]) : null,
    (miner ?? coordinator)!.at,
  );
  const model =
    (mr && typeof mr["model"] === "string" ? mr["model"] : null) ?? (cr ? receiptModel(cr) : null);
  const row = b.row(day, gpu, model ?? "(unknown)");
  row.jobs++;
  row.units += cUnits ?? billed?.units ?? 0;
  const unitPrice = cUnitPrice ?? billed?.unit_price ?? null;
  row.prices.add(unitPrice);
  if (cPrice !== null) {
    row.amount += cPrice;
    row.confirmed++;
  } else if (billed && billed.unit_price !== null) row.amount += billed.units * billed.unit_price;
  else row.unpriced++;
}

/** Build the report from the host's ledger. */
export function buildReport(stateDir: string, ledger: Ledger, opts: ReportOptions = {}): EarningsReport {
  const b = new Builder();
  const jobs = new Map<string, JobFacts>();
  const minerIds = new Map<string, Set<string>>();
  const job = (gpu: string, jobId: string): JobFacts => {
    const key = JSON.stringify([gpu, jobId]);
    let j = jobs.get(key);
    if (!j) {
      j = { gpu, jobId, miner: null, coordinator: [] };
      jobs.set(key, j);
    }
    return j;
  };
  for (const u of ledger.unreadable)
    b.issue({
      kind: "unreadable_line",
      gpu: null,
      jobId: null,
      detail: u.reason,
      file: u.file,
      line: u.line,
    });

  for (const e of ledger.entries) {
    const at = { file: e.file, line: e.line };
    if (e.kind === "failure") {
      const row = b.row(dayOf(null, e.at), e.gpu, "-");
      row.failures++;
      continue;
    }
    if (e.kind === "miner") {
      const problem = minerReceiptProblem(e);
      if (problem) {
        b.issue({ kind: "invalid_entry", gpu: e.gpu, jobId: e.jobId, detail: problem, ...at });
        continue;
      }
      const id = (e.receipt as Obj)["miner_id"];
      if (typeof id === "string") {
        const ids = minerIds.get(e.gpu) ?? new Set<string>();
        ids.add(id);
        minerIds.set(e.gpu, ids);
      }
      // A job run again (a restart before its result was stored) signs again: the last one counts.
      job(e.gpu, e.jobId).miner = e;
      continue;
    }
    if (!isObj(e.receipt)) {
      b.issue({
        kind: "invalid_entry",
        gpu: e.gpu,
        jobId: e.jobId,
        detail: "the coordinator receipt is not a JSON object",
        ...at,
      });
      continue;
    }
    const rid = e.receipt["job_id"];
    if (rid !== undefined && rid !== e.jobId) {
      b.issue({
        kind: "invalid_entry",
        gpu: e.gpu,
        jobId: e.jobId,
        detail: `the coordinator receipt is for job ${JSON.stringify(rid)}`,
        ...at,
      });
      continue;
    }
    job(e.gpu, e.jobId).coordinator.push(e);
  }
  for (const j of jobs.values()) reconcileJob(b, j, opts);

  const rows: EarningsRow[] = [...b.rows.values()]
    .map(({ prices, ...r }) => ({
      ...r,
      units: round6(r.units),
      amount: round6(r.amount),
      unitPrice: prices.size === 1 ? [...prices][0]! : null,
    }))
    .sort((x, y) =>
      x.day !== y.day
        ? x.day < y.day
          ? -1
          : 1
        : x.gpu !== y.gpu
          ? x.gpu < y.gpu
            ? -1
            : 1
          : x.model < y.model
            ? -1
            : 1,
    );
  const totals = { jobs: 0, units: 0, amount: 0, confirmed: 0, failures: 0 };
  for (const r of rows) {
    totals.jobs += r.jobs;
    totals.units += r.units;
    totals.amount += r.amount;
    totals.confirmed += r.confirmed;
    totals.failures += r.failures;
  }
  totals.units = round6(totals.units);
  totals.amount = round6(totals.amount);
  const counts = Object.fromEntries(ISSUE_KINDS.map((k) => [k, 0])) as Record<IssueKind, number>;
  for (const i of b.issues) counts[i.kind]++;
  return {
    stateDir,
    sources: ledger.sources.map((s) => ({ ...s, minerIds: [...(minerIds.get(s.gpu) ?? [])].sort() })),
    rows,
    totals,
    reconciliation: { jobs: jobs.size, counts, issues: b.issues },
  };
}
