// Where the miner keeps its state: keys, outbox, claim journal, receipts log, model cache.
import { homedir } from "node:os";
import { join } from "node:path";

export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env["XDG_STATE_HOME"] || join(homedir(), ".local", "state");
  return join(base, "aitbc-native-miner");
}

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env["XDG_CACHE_HOME"] || join(homedir(), ".cache");
  return join(base, "aitbc-native-miner");
}

export const stateFiles = {
  key: (stateDir: string) => join(stateDir, "miner-key.json"),
  outbox: (stateDir: string) => join(stateDir, "outbox"),
  journal: (stateDir: string) => join(stateDir, "journal"),
  receiptsLog: (stateDir: string) => join(stateDir, "receipts.jsonl"),
};
