// The `run` settings `doctor` takes, read as `run` reads them: each flag, argument and environment
// name from its row in the settings table, each value from flags > AITBC_* environment > --config
// file, parsed by the row's schema (a value run refuses is the same ConfigError, exit code 2).
// Only the help is doctor's own, where doctor does something else with the setting.
import { type Command, Option } from "commander";
import { resolveRunSettings, type SomeRunSettings } from "../config.js";
import { CONFIG_ENV, envOf, RUN_SETTINGS, type RunConfigKey } from "../settings.js";

/** A setting as advice names it: `--models`, or with its argument, `--models DIR`. */
export function flag(key: RunConfigKey, withArg = false): string {
  const row: { flag: string; arg?: string } = RUN_SETTINGS[key];
  return withArg && row.arg !== undefined ? `${row.flag} ${row.arg}` : row.flag;
}

/** doctor's settings in its `--help` order; a string is doctor's help, null is run's own. */
const DOCTOR_HELP = {
  coordinator: "also check that this coordinator answers",
  apiKey: `API key for the coordinator check (visible in ps: prefer ${flag("apiKeyFile")})`,
  apiKeyFile: "file holding the API key",
  allowInsecureHttp: null,
  models: "models directory to inspect, each file as run judges it",
  modelMap: "model map to inspect, as run would",
  stateDir: `state directory (default: stateDir in --config, else ${RUN_SETTINGS.stateDir.shownDefault})`,
  nvmlLibrary: null,
  gpu: `as run's ${flag("gpu")}: judge inference as run would`,
  allowCpuInference: "as run's: CPU inference on a host whose NVML sees GPUs is acceptable",
} satisfies Partial<Record<RunConfigKey, string | null>>;

type DoctorKey = keyof typeof DOCTOR_HELP;
export const DOCTOR_KEYS = Object.keys(DOCTOR_HELP) as DoctorKey[];

export type DoctorSettings = SomeRunSettings<DoctorKey>;

/** Each setting an option as run's (`--gpu <auto|cpu>`), no commander default: env and file decide. */
export function addDoctorOptions(cmd: Command): Command {
  for (const key of DOCTOR_KEYS) {
    const row: { flag: string; arg?: string; help: string } = RUN_SETTINGS[key];
    const spec = row.arg !== undefined ? `${row.flag} <${row.arg}>` : row.flag;
    cmd.addOption(new Option(spec, `${DOCTOR_HELP[key] ?? row.help}; env ${envOf(key)}`));
    if (key === "stateDir")
      cmd.option(
        "--config <FILE>",
        `JSON config file: these settings are read from it as run reads them (flags > AITBC_* environment > file); env ${CONFIG_ENV}`,
      );
  }
  return cmd;
}

/** The values, at action time (help never shows an env value). Throws ConfigError as run would. */
export function doctorSettings(
  opts: Record<string, unknown>,
  env: NodeJS.ProcessEnv = process.env,
): DoctorSettings {
  const flags: Partial<Record<DoctorKey, unknown>> = {};
  for (const key of DOCTOR_KEYS) if (opts[key] !== undefined) flags[key] = opts[key];
  const configFile = typeof opts["config"] === "string" ? opts["config"] : undefined;
  return resolveRunSettings(DOCTOR_KEYS, { flags, env, configFile });
}
