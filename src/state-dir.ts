// The state directory, resolved the same way for every command: --state-dir, else
// $AITBC_STATE_DIR, else `stateDir` in the --config file (or $AITBC_CONFIG), else the default.
// `run` gets the same answer through config.ts.
import { readConfigFile } from "./config-file.js";
import { defaultStateDir } from "./paths.js";

export const STATE_DIR_HELP =
  "state directory with the key and receipts log (default: $AITBC_STATE_DIR, else stateDir in --config, else $XDG_STATE_HOME/aitbc-native-miner)";

export const CONFIG_HELP = "JSON config file whose stateDir applies here too; env AITBC_CONFIG";

export function resolveStateDir(
  flag: string | undefined,
  configFile?: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): string {
  if (flag) return flag;
  if (env["AITBC_STATE_DIR"]) return env["AITBC_STATE_DIR"];
  const path = configFile ?? env["AITBC_CONFIG"];
  const fromFile = path ? readConfigFile(path)["stateDir"] : undefined;
  if (typeof fromFile === "string" && fromFile !== "") return fromFile;
  return defaultStateDir(env);
}
