// The earnings report as an operator reads it: a table (default), CSV (one line per day, GPU and
// model), or JSON (everything, issues included).
import type { MinerView } from "./coordinator-view.js";
import { type EarningsReport, type EarningsRow, ISSUE_KINDS, type IssueKind } from "./report.js";

export interface FullReport extends EarningsReport {
  coordinator?: { url: string; miners: MinerView[] } | undefined;
}

const ISSUE_TEXT: Record<IssueKind, string> = {
  missing_receipt: "no coordinator receipt",
  units_mismatch: "units differ",
  price_mismatch: "price differs",
  bad_signature: "signature invalid",
  unverified: "signature not checked (no --coordinator-key)",
  duplicate_receipt: "billed twice",
  unmatched_receipt: "coordinator receipt without a job here",
  invalid_entry: "entry unusable",
  unreadable_line: "unreadable line",
};

const num = (n: number | null): string => (n === null ? "-" : String(n));

function table(head: string[], rows: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (i < 3 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(head), ...rows.map(line)];
}

function rowCells(r: EarningsRow): string[] {
  return [
    r.day,
    r.gpu,
    r.model,
    String(r.jobs),
    String(r.units),
    r.jobs === 0 ? "-" : r.unitPrice === null ? "mixed" : String(r.unitPrice),
    String(r.amount),
    `${r.confirmed}/${r.jobs}`,
    String(r.failures),
  ];
}

/** Issues listed one per line at most (the counts cover them all). */
const MAX_LISTED = 20;

export function formatText(r: FullReport): string {
  const out = [`earnings of ${r.stateDir}`];
  for (const s of r.sources)
    out.push(
      `  ${s.gpu === "host" ? "host" : `worker ${s.gpu}`}: ${s.dir}${s.minerIds.length > 0 ? ` (${s.minerIds.join(", ")})` : ""}`,
    );
  if (r.rows.length === 0) out.push("no jobs yet");
  else {
    out.push("");
    out.push(
      ...table(
        ["day", "gpu", "model", "jobs", "units", "price", "amount", "signed", "failures"],
        r.rows.map(rowCells),
      ),
    );
    const t = r.totals;
    out.push(
      `total: ${t.jobs} jobs, ${t.units} units, amount ${t.amount} (${t.confirmed} signed by the coordinator), ${t.failures} failures`,
    );
  }
  out.push("");
  const c = r.reconciliation.counts;
  const found = ISSUE_KINDS.filter((k) => c[k] > 0);
  out.push(
    found.length === 0
      ? `reconciliation: ${r.reconciliation.jobs} jobs, every one matches its coordinator receipt`
      : `reconciliation: ${r.reconciliation.jobs} jobs; ${found.map((k) => `${c[k]} ${ISSUE_TEXT[k]}`).join(", ")}`,
  );
  // Unchecked signatures are counted, not listed (every receipt, without a key).
  const listed = r.reconciliation.issues.filter((i) => i.kind !== "unverified");
  for (const i of listed.slice(0, MAX_LISTED)) {
    const where = i.file ? ` (${i.file}${i.line ? `:${i.line}` : ""})` : "";
    out.push(`  ${i.kind}  ${i.gpu ?? "-"}  ${i.jobId ?? "-"}  ${i.detail}${where}`);
  }
  if (listed.length > MAX_LISTED) out.push(`  … ${listed.length - MAX_LISTED} more (--json lists them all)`);
  if (r.coordinator) {
    out.push("", `coordinator ${r.coordinator.url}:`);
    for (const m of r.coordinator.miners) {
      const e = m.earnings.ok
        ? `earnings ${m.earnings.value.total} ${m.earnings.value.currency ?? ""} (pending ${num(m.earnings.value.pending)}, paid ${num(m.earnings.value.paid)}, ${num(m.earnings.value.completedJobs)} completed jobs)`
        : `earnings: ${m.earnings.reason}`;
      const j = m.completedJobs.ok
        ? `${m.completedJobs.value.length} completed jobs listed`
        : `job listing: ${m.completedJobs.reason}`;
      const t = m.trustScore.ok
        ? `trust score ${m.trustScore.value.composite}${m.trustScore.value.level ? ` (${m.trustScore.value.level})` : ""}`
        : `trust score: ${m.trustScore.reason}`;
      out.push(`  ${m.minerId}: ${e}; ${j}; ${t}`);
    }
  }
  return `${out.join("\n")}\n`;
}

/** RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled. */
function csvField(v: string): string {
  return /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

export function formatCsv(r: FullReport): string {
  const head = [
    "day",
    "gpu",
    "model",
    "jobs",
    "units",
    "unit_price",
    "amount",
    "signed_jobs",
    "unpriced_jobs",
    "failures",
  ];
  const lines = [head.join(",")];
  for (const x of r.rows)
    lines.push(
      [
        x.day,
        x.gpu,
        x.model,
        x.jobs,
        x.units,
        x.unitPrice ?? "",
        x.amount,
        x.confirmed,
        x.unpriced,
        x.failures,
      ]
        .map((v) => csvField(String(v)))
        .join(","),
    );
  return `${lines.join("\r\n")}\r\n`;
}
