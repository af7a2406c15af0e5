// `run` (the default command): mine until SIGTERM/SIGINT.
import { type Command, Option } from "commander";
import { composeMiner } from "../compose.js";
import { type RunConfigKey, resolveRunConfig, SETTINGS } from "../config.js";
import { createLogger, registerSecret } from "../log.js";
import { type MetricsServer, renderMinerMetrics, startMetricsServer } from "../metrics.js";
import { urlCredentials } from "../redact.js";

/** Add every run setting as a flag (no commander defaults: an absent flag lets env/file decide). */
export function addRunOptions(cmd: Command): Command {
  cmd.option("--config <FILE>", "JSON config file (flags > AITBC_* environment > file); env AITBC_CONFIG");
  for (const s of SETTINGS) {
    const envHint = `env AITBC_${s.flag.slice(2).replace(/-/g, "_").toUpperCase()}`;
    cmd.addOption(new Option(s.arg ? `${s.flag} <${s.arg}>` : s.flag, `${s.help}; ${envHint}`));
  }
  return cmd;
}

export function flagsFrom(cmd: Command): Partial<Record<RunConfigKey, unknown>> {
  const opts = cmd.opts<Record<string, unknown>>();
  const flags: Partial<Record<RunConfigKey, unknown>> = {};
  for (const s of SETTINGS) if (opts[s.key] !== undefined) flags[s.key] = opts[s.key];
  return flags;
}

export function register(program: Command): void {
  const cmd = program
    .command("run", { isDefault: true })
    .description("register with a coordinator and mine jobs until stopped (the default command)");
  addRunOptions(cmd).action(async () => {
    const cfg = resolveRunConfig({
      flags: flagsFrom(cmd),
      configFile: cmd.opts<{ config?: string }>().config,
    });
    // user:pass in a URL is a secret too: no log line may carry it.
    for (const c of [...urlCredentials(cfg.coordinator), ...urlCredentials(cfg.ollamaUrl)]) registerSecret(c);
    const log = createLogger({ level: cfg.logLevel });
    const inline = (["apiKey", "bearerToken"] as const).filter((k) => cmd.opts()[k] !== undefined);
    if (inline.length > 0) {
      log.warn(
        { event: "secret_on_command_line" },
        "a credential given as a flag is visible to every local user in ps: use --api-key-file / --bearer-token-file or the environment",
      );
    }
    process.exitCode = await runMiner(cfg, log);
  });
}

export async function runMiner(
  cfg: ReturnType<typeof resolveRunConfig>,
  log: ReturnType<typeof createLogger>,
): Promise<number> {
  const composed = await composeMiner(cfg, log);
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      // A second signal: the operator wants out now. The outbox is already on disk.
      log.warn({ event: "forced_exit", signal: sig }, "second signal: exiting at once");
      process.exit(130);
    }
    log.info(
      { event: "signal", signal: sig },
      `received ${sig}: finishing in-flight jobs (send again to exit at once)`,
    );
    void composed.miner.shutdown(sig);
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  let metrics: MetricsServer | null = null;
  if (cfg.metricsPort !== undefined) {
    metrics = await startMetricsServer(cfg.metricsHost, cfg.metricsPort, async () =>
      renderMinerMetrics(composed.miner.snapshot(), { miner_id: cfg.minerId }),
    );
    log.info({ event: "metrics", url: metrics.url }, `Prometheus metrics on ${metrics.url}`);
  }
  try {
    const exit = await composed.miner.run();
    if (exit.code !== 0) log.error({ event: "exit", code: exit.code, reason: exit.reason }, exit.reason);
    // A wedged backend may hold native work that never ends: do not wait for it to let go.
    if (exit.code === 70) setTimeout(() => process.exit(70), 500).unref();
    return exit.code;
  } finally {
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
    await metrics?.close();
    await composed.close();
  }
}
