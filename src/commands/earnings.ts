// `earnings`: what the whole host earned, per day, GPU and model, from every receipts log on it
// (the host's state directory and each worker's `workers/<uuid>/`), reconciled against the
// coordinator's signed receipts and, given --coordinator, against the coordinator's own view.
import type { Command } from "commander";
import { ConfigError, checkCoordinatorUrl, resolveSecretFiles } from "../config.js";
import { CoordinatorView, compareJobs } from "../earnings/coordinator-view.js";
import { type FullReport, formatCsv, formatText } from "../earnings/format.js";
import { type Ledger, readLedger } from "../earnings/ledger.js";
import { buildReport } from "../earnings/report.js";
import { parsePublicKey } from "../receipts/index.js";
import { redactUrlCredentials } from "../redact.js";
import { CONFIG_HELP, resolveStateDir, STATE_DIR_HELP } from "../state-dir.js";

interface EarningsOptions {
  stateDir?: string;
  config?: string;
  json?: boolean;
  csv?: boolean;
  coordinatorKey?: string;
  coordinator?: string;
  apiKeyFile?: string;
  bearerTokenFile?: string;
  allowInsecureHttp?: boolean;
}

/** The job ids a worker holds receipts for, as one miner id: its own receipts and the coordinator's. */
function jobsOf(ledger: Ledger, gpu: string, minerId: string): { mine: Set<string>; signed: Set<string> } {
  const mine = new Set<string>();
  const signed = new Set<string>();
  for (const e of ledger.entries) {
    if (e.gpu !== gpu || typeof e.receipt !== "object" || e.receipt === null) continue;
    const r = e.receipt as Record<string, unknown>;
    const who = r["miner_id"] ?? r["provider"];
    if (who !== undefined && who !== minerId) continue;
    if (e.kind === "miner") mine.add(e.jobId);
    else if (e.kind === "coordinator") signed.add(e.jobId);
  }
  return { mine, signed };
}

async function coordinatorPart(report: FullReport, ledger: Ledger, opts: EarningsOptions): Promise<void> {
  const url = checkCoordinatorUrl(opts.coordinator!, opts.allowInsecureHttp === true);
  const env = process.env;
  const secrets = resolveSecretFiles({
    apiKey: env["AITBC_API_KEY"],
    apiKeyFile: opts.apiKeyFile ?? env["AITBC_API_KEY_FILE"],
    bearerToken: env["AITBC_BEARER_TOKEN"],
    bearerTokenFile: opts.bearerTokenFile ?? env["AITBC_BEARER_TOKEN_FILE"],
  });
  const view = new CoordinatorView({ baseUrl: url.toString().replace(/\/+$/, ""), ...secrets });
  const miners = [];
  try {
    for (const src of report.sources) {
      for (const id of src.minerIds) {
        const m = await view.miner(id);
        miners.push(m);
        const { mine, signed } = jobsOf(ledger, src.gpu, id);
        for (const issue of compareJobs(m, src.gpu, mine, signed)) {
          report.reconciliation.issues.push(issue);
          report.reconciliation.counts[issue.kind]++;
        }
      }
    }
  } finally {
    await view.close();
  }
  report.coordinator = { url: redactUrlCredentials(url.toString()), miners };
}

export function register(program: Command): void {
  program
    .command("earnings")
    .description(
      "what the whole host earned per day, GPU and model (jobs, units, price, amount, failures), reconciled against the coordinator's receipts",
    )
    .option("--state-dir <DIR>", STATE_DIR_HELP)
    .option("--config <FILE>", CONFIG_HELP)
    .option("--json", "print the whole report as JSON (rows, totals, every issue)")
    .option("--csv", "print one CSV line per day, GPU and model")
    .option("--coordinator-key <HEX|B64URL>", "verify every coordinator receipt again with this public key")
    .option(
      "--coordinator <URL>",
      "also ask this coordinator for its view: earnings, completed jobs, trust score",
    )
    .option("--api-key-file <FILE>", "API key for --coordinator (else AITBC_API_KEY or AITBC_API_KEY_FILE)")
    .option("--bearer-token-file <FILE>", "bearer token for --coordinator instead of an API key")
    .option("--allow-insecure-http", "allow plain http:// to a non-loopback --coordinator")
    .addHelpText(
      "after",
      "\nReads receipts.jsonl in the state directory and in every workers/<uuid>/ under it (one per\n" +
        "GPU on a multi-GPU host). Units are GPU seconds; the amount of a job is the price the\n" +
        "coordinator signed, else its units x the unit price the miner asked. Reconciliation lists\n" +
        "jobs without a coordinator receipt, units or price that differ, signatures that fail,\n" +
        "results billed twice, and lines that cannot be read. Exit status: 0 report printed (issues\n" +
        "or not), 1 the state could not be read, 2 a bad option.",
    )
    .action(async (opts: EarningsOptions) => {
      const fail = (code: number, msg: string) => {
        process.stderr.write(`aitbc-native-miner: ${msg}\n`);
        process.exitCode = code;
      };
      if (opts.json && opts.csv) return fail(2, "--json and --csv: choose one");
      if (opts.coordinatorKey) {
        try {
          parsePublicKey(opts.coordinatorKey);
        } catch (err) {
          return fail(2, `--coordinator-key: ${(err as Error).message}`);
        }
      }
      let stateDir: string;
      let ledger: Ledger;
      try {
        stateDir = resolveStateDir(opts.stateDir, opts.config);
        ledger = await readLedger(stateDir);
      } catch (err) {
        if (err instanceof ConfigError) return fail(2, err.message);
        return fail(1, `cannot read the state directory: ${(err as Error).message}`);
      }
      const report: FullReport = buildReport(stateDir, ledger, { coordinatorKey: opts.coordinatorKey });
      if (opts.coordinator) {
        try {
          await coordinatorPart(report, ledger, opts);
        } catch (err) {
          if (err instanceof ConfigError) return fail(2, err.message);
          throw err;
        }
      }
      if (opts.json) process.stdout.write(`${JSON.stringify(report)}\n`);
      else if (opts.csv) process.stdout.write(formatCsv(report));
      else process.stdout.write(formatText(report));
    });
}
