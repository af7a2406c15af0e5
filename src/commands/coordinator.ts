// `coordinator`: run the local coordinator (both dialects) so an operator can smoke-test a host:
//   aitbc-native-miner coordinator --port 8080 --api-key KEY --jobs 3 --model tiny --prompt "Hi"
//   aitbc-native-miner run --coordinator http://127.0.0.1:8080 --api-key KEY ...
// Runs until SIGINT/SIGTERM; every event (registration, hand-over, completion...) is logged.
import type { Command } from "commander";
import { parseIntFlag } from "../config.js";
import { startLocalCoordinator } from "../local-coordinator/index.js";
import { createLogger, registerSecret } from "../log.js";

interface CoordinatorCmdOptions {
  port: string;
  host: string;
  apiKey?: string[];
  jobs: string;
  model: string;
  prompt: string;
  maxTokens?: string;
  stateFile?: string;
  leaseSeconds: string;
  requeueOnFail?: boolean;
  upstreamQuirks?: boolean;
  longPollMax: string;
  logLevel: string;
}

const LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

export function register(program: Command): void {
  program
    .command("coordinator")
    .description(
      "run a local coordinator (aitbc and claim dialects, in memory) to smoke-test this host;\n" +
        "queue test jobs with --jobs, then point `run --coordinator` at the printed URL",
    )
    .option("--port <N>", "port to listen on (0 = any free port)", "8080")
    .option("--host <ADDR>", "address to bind (loopback unless you mean otherwise)", "127.0.0.1")
    .option("--api-key <KEY>", "accepted X-Api-Key (repeatable; none = no authentication)", collect)
    .option("--jobs <N>", "inference jobs to queue at start", "0")
    .option("--model <NAME>", "model name for the queued jobs", "tiny")
    .option("--prompt <TEXT>", "prompt for the queued jobs", "Hello from the AITBC coordinator.")
    .option("--max-tokens <N>", "max_tokens for the queued jobs")
    .option("--state-file <FILE>", "keep jobs in this file across restarts")
    .option("--lease-seconds <N>", "requeue a RUNNING job after this long (0 = never)", "600")
    .option("--requeue-on-fail", "requeue failed jobs instead of marking them FAILED")
    .option(
      "--upstream-quirks",
      "behave as the real AITBC coordinator does (no leases, /fail keeps the slot, repeat results accepted)",
    )
    .option(
      "--long-poll-max <S>",
      "hold a poll that asks max_wait_seconds for up to S s until a job comes (0 = answer at once, as the reference does)",
      "0",
    )
    .option("--log-level <LEVEL>", "log level", "info")
    .action(async (opts: CoordinatorCmdOptions) => {
      process.exitCode = await runCoordinator(opts);
    });
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

async function runCoordinator(opts: CoordinatorCmdOptions): Promise<number> {
  const port = parseIntFlag("--port", opts.port, 0, 65535);
  const jobs = parseIntFlag("--jobs", opts.jobs, 0, 10_000);
  const lease = parseIntFlag("--lease-seconds", opts.leaseSeconds, 0, 7 * 86_400);
  const longPollMax = parseIntFlag("--long-poll-max", opts.longPollMax, 0, 300);
  const maxTokens =
    opts.maxTokens === undefined ? undefined : parseIntFlag("--max-tokens", opts.maxTokens, 1, 1_000_000);
  const level = LEVELS.find((l) => l === opts.logLevel);
  if (!level) throw new Error(`--log-level must be one of ${LEVELS.join(", ")}`);
  const apiKeys = opts.apiKey ?? [];
  for (const k of apiKeys) registerSecret(k);
  const log = createLogger({ level });

  const coordinator = await startLocalCoordinator({
    host: opts.host,
    port,
    apiKeys,
    stateFile: opts.stateFile,
    leaseTimeoutMs: lease * 1000,
    requeueOnFail: opts.requeueOnFail === true,
    upstreamQuirks: opts.upstreamQuirks === true,
    longPollMaxSeconds: longPollMax,
    log,
  });
  for (let i = 0; i < jobs; i++) {
    const payload: Record<string, unknown> = { type: "inference", model: opts.model, prompt: opts.prompt };
    if (maxTokens !== undefined) payload["max_tokens"] = maxTokens;
    coordinator.enqueue({ payload });
  }
  const s = coordinator.stats();
  log.info(
    { event: "listening", url: coordinator.url, auth: apiKeys.length > 0, queued: s.jobs.queued },
    `local coordinator listening on ${coordinator.url}`,
  );
  process.stdout.write(`${coordinator.url}\n`);

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });
  const end = coordinator.stats();
  log.info({ event: "stopping", signal, jobs: end.jobs }, "local coordinator stopping");
  await coordinator.close();
  return 0;
}
