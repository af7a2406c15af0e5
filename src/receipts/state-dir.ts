// The state directory the receipts commands use: --state-dir, else $AITBC_STATE_DIR, else the default.
import { defaultStateDir } from "../paths.js";

export const STATE_DIR_HELP =
  "state directory with the key and receipts log (default: $AITBC_STATE_DIR, else $XDG_STATE_HOME/aitbc-native-miner)";

export function resolveStateDir(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (flag) return flag;
  return env["AITBC_STATE_DIR"] || defaultStateDir(env);
}
