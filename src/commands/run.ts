// `run` (the default command): mine until SIGTERM/SIGINT.
import { type Command, Option } from "commander";
import { type RunConfigKey, resolveRunConfig, SETTINGS } from "../config.js";
import { urlCredentials } from "../redact.js";
import { registerSecret } from "../secrets.js";
import { CONFIG_ENV } from "../settings.js";

/** Add every run setting as a flag (no commander defaults: an absent flag lets env/file decide). */
export function addRunOptions(cmd: Command): Command {
  cmd.option("--config <FILE>", `JSON config file (flags > AITBC_* environment > file); env ${CONFIG_ENV}`);
  for (const s of SETTINGS)
    cmd.addOption(new Option(s.arg ? `${s.flag} <${s.arg}>` : s.flag, `${s.help}; env ${s.env}`));
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
    // A webhook's URL (Slack's) is its own credential.
    registerSecret(cfg.alertWebhook);
    // The miner's modules load only when it runs (`run --help` stays fast).
    const [{ createLogger }, { runMiner }] = await Promise.all([
      import("../log.js"),
      import("../run-miner.js"),
    ]);
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
