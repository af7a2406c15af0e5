// `receipts`: list and summarise the receipts logs of the whole host (the state directory's and
// every worker's under workers/<uuid>/ on a multi-GPU host): the miner's own receipts and the
// coordinator's, with whether each verified. Money per day and GPU: the `earnings` command.

import type { Command } from "commander";
import { stateSources } from "../earnings/ledger.js";
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

type Shown = ReceiptLogEntry & { gpu: string };

function entryLine(e: Shown, many: boolean): string {
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
  return `  ${at}  ${many ? `${e.gpu}  ` : ""}${e.kind.padEnd(11)}  ${e.jobId}  ${receiptModel(r) ?? "-"}  ${str(r["units"])} ${str(r["unit_type"])}  ${status}`;
}

function summaryText(paths: string[], s: ReceiptSummary, shown: Shown[]): string {
  const lines = paths.map((p) => `receipts log ${p}`);
  const many = paths.length > 1;
  if (s.count === 0 && s.skippedLines === 0) {
    lines.push("  no receipts yet");
    return `${lines.join("\n")}\n`;
  }
  if (shown.length < s.count) lines.push(`last ${shown.length} of ${s.count}:`);
  for (const e of shown) lines.push(entryLine(e, many));
  lines.push(
    `${s.count} receipts (miner ${s.byKind.miner}, coordinator ${s.byKind.coordinator}): ` +
      `${s.verified} verified, ${s.failed} failed, ${s.unverified} unverified`,
  );
  if (s.failures > 0) lines.push(`${s.failures} jobs failed back (see \`earnings\`)`);
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
      const stateDir = resolveStateDir(opts.stateDir, opts.config);
      const path = stateFiles.receiptsLog(stateDir);
      const paths: string[] = [];
      const entries: Shown[] = [];
      let skipped = 0;
      let where = path;
      try {
        // The host's log, then each worker's: a multi-GPU host keeps one per GPU.
        for (const src of await stateSources(stateDir)) {
          where = stateFiles.receiptsLog(src.dir);
          const read = await new ReceiptLog(where).read();
          if (src.gpu === "host" || read.entries.length > 0 || read.skipped > 0) paths.push(where);
          for (const e of read.entries) entries.push({ ...e, gpu: src.gpu });
          skipped += read.skipped;
        }
      } catch (err) {
        process.stderr.write(`aitbc-native-miner: cannot read ${where}: ${(err as Error).message}\n`);
        process.exitCode = 1;
        return;
      }
      const summary = summarizeReceipts({ entries, skipped });
      const receipts = entries.filter((e) => e.kind !== "failure");
      const shown = limit === 0 ? [] : receipts.slice(-limit);
      if (opts.json)
        process.stdout.write(`${stringifyJson({ path, paths, ...summary, entries: shown } as never)}\n`);
      else process.stdout.write(summaryText(paths, summary, shown));
    });
}
