// The state directory, resolved the same way for every command: --state-dir, else
// $AITBC_STATE_DIR, else `stateDir` in the --config file (or $AITBC_CONFIG), else the default.
// `run` gets the same answer through config.ts.
import { readConfigFile } from "./config-file.js";
import { defaultStateDir } from "./paths.js";
import { CONFIG_ENV, envOf } from "./settings.js";

const STATE_DIR_ENV = envOf("stateDir");

export const STATE_DIR_HELP = `state directory with the key and receipts log (default: $${STATE_DIR_ENV}, else stateDir in --config, else $XDG_STATE_HOME/aitbc-native-miner)`;

export const CONFIG_HELP = `JSON config file whose stateDir applies here too; env ${CONFIG_ENV}`;

export function resolveStateDir(
  flag: string | undefined,
  configFile?: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): string {
  if (flag) return flag;
  if (env[STATE_DIR_ENV]) return env[STATE_DIR_ENV];
  const path = configFile ?? env[CONFIG_ENV];
  const fromFile = path ? readConfigFile(path)["stateDir"] : undefined;
  if (typeof fromFile === "string" && fromFile !== "") return fromFile;
  return defaultStateDir(env);
}
