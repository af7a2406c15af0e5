// `receipts`: list and summarise the receipts log (the miner's own receipts and the
// coordinator's, with whether each verified).

import type { Command } from "commander";
import { stateFiles } from "../paths.js";
import {
  JsonFloat,
  ReceiptLog,
  type ReceiptLogEntry,
  type ReceiptSummary,
  stringifyJson,
  summarizeReceipts,
} from "../receipts/index.js";
import { receiptModel } from "../receipts/receipt.js";
import { CONFIG_HELP, resolveStateDir, STATE_DIR_HELP } from "../state-dir.js";

interface ReceiptsOptions {
  config?: string;
  stateDir?: string;
  json?: boolean;
  limit: string;
}

function str(v: unknown): string {
  if (v === undefined || v === null) return "-";
  if (v instanceof JsonFloat) return v.toString();
  return typeof v === "object" ? stringifyJson(v) : String(v);
}

function entryLine(e: ReceiptLogEntry): string {
  const r = typeof e.receipt === "object" && e.receipt !== null ? (e.receipt as Record<string, unknown>) : {};
  // A coordinator receipt valid only without upstream's post-signing fields says which ones.
  const status =
    e.verified === true
      ? e.reason?.startsWith("valid, unsigned fields")
        ? `verified (${e.reason})`
        : "verified"
      : e.verified === false
        ? `FAILED (${e.reason ?? "?"})`
        : "unverified";
  const at = typeof e.at === "number" ? new Date(e.at).toISOString() : e.at;
  return `  ${at}  ${e.kind.padEnd(11)}  ${e.jobId}  ${receiptModel(r) ?? "-"}  ${str(r["units"])} ${str(r["unit_type"])}  ${status}`;
}

function summaryText(path: string, s: ReceiptSummary, shown: ReceiptLogEntry[]): string {
  const lines = [`receipts log ${path}`];
  if (s.count === 0 && s.skippedLines === 0) {
    lines.push("  no receipts yet");
    return `${lines.join("\n")}\n`;
  }
  if (shown.length < s.count) lines.push(`last ${shown.length} of ${s.count}:`);
  for (const e of shown) lines.push(entryLine(e));
  lines.push(
    `${s.count} receipts (miner ${s.byKind.miner}, coordinator ${s.byKind.coordinator}): ` +
      `${s.verified} verified, ${s.failed} failed, ${s.unverified} unverified`,
  );
  if (s.skippedLines > 0) lines.push(`${s.skippedLines} unreadable lines skipped`);
  const models = Object.keys(s.unitsByModel).sort();
  if (models.length > 0) {
    lines.push("units by model (miner receipts / coordinator receipts):");
    for (const m of models) {
      const u = s.unitsByModel[m]!;
      lines.push(`  ${m}  ${u.miner} / ${u.coordinator}`);
    }
  }
  return `${lines.join("\n")}\n`;
}

export function register(program: Command): void {
  program
    .command("receipts")
    .description("list and summarise the receipts log: counts by kind, verification, units per model")
    .option("--state-dir <DIR>", STATE_DIR_HELP)
    .option("--config <FILE>", CONFIG_HELP)
    .option("--json", "print the summary and the listed entries as JSON")
    .option("--limit <N>", "list at most the last N entries (0: summary only)", "20")
    .addHelpText(
      "after",
      "\nThe log is receipts.jsonl in the state directory: one line per receipt, the miner's own\n" +
        "(kind miner) and the coordinator's answer (kind coordinator, verified with --coordinator-key).",
    )
    .action(async (opts: ReceiptsOptions) => {
      const limit = Number(opts.limit);
      if (!Number.isSafeInteger(limit) || limit < 0) {
        process.stderr.write(`aitbc-native-miner: --limit must be a non-negative integer\n`);
        process.exitCode = 2;
        return;
      }
      const path = stateFiles.receiptsLog(resolveStateDir(opts.stateDir, opts.config));
      let read: Awaited<ReturnType<ReceiptLog["read"]>>;
      try {
        read = await new ReceiptLog(path).read();
      } catch (err) {
        process.stderr.write(`aitbc-native-miner: cannot read ${path}: ${(err as Error).message}\n`);
        process.exitCode = 1;
        return;
      }
      const summary = summarizeReceipts(read);
      const shown = limit === 0 ? [] : read.entries.slice(-limit);
      if (opts.json) process.stdout.write(`${stringifyJson({ path, ...summary, entries: shown })}\n`);
      else process.stdout.write(summaryText(path, summary, shown));
    });
}
