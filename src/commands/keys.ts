// `keys generate` / `keys show`: the miner's Ed25519 receipt signing key. Only the public part is
// ever printed.
import type { Command } from "commander";
import { stateFiles } from "../paths.js";
import type { SigningKey } from "../receipts/crypto.js";
import { generateKeyFile, KeyFileError, loadKeyFile } from "../receipts/keys.js";
import { CONFIG_HELP, resolveStateDir, STATE_DIR_HELP } from "../state-dir.js";

interface KeysOptions {
  config?: string;
  stateDir?: string;
  force?: boolean;
  json?: boolean;
}

function publicView(key: SigningKey, path: string) {
  return { alg: "Ed25519", public_key_hex: key.publicKeyHex, key_id: key.keyId, path };
}

function print(key: SigningKey, path: string, json: boolean | undefined, heading: string): void {
  const v = publicView(key, path);
  if (json) {
    process.stdout.write(`${JSON.stringify(v)}\n`);
    return;
  }
  process.stdout.write(
    `${heading}\n  public key  ${v.public_key_hex}\n  key_id      ${v.key_id}\n  file        ${v.path}\n`,
  );
}

function fail(err: unknown): void {
  if (!(err instanceof KeyFileError)) throw err;
  process.stderr.write(`aitbc-native-miner: ${err.message}\n`);
  process.exitCode = 1;
}

export function register(program: Command): void {
  const keys = program
    .command("keys")
    .description("manage the Ed25519 key that signs this miner's receipts")
    .addHelpText(
      "after",
      "\nThe key file (miner-key.json in the state directory) has mode 0600; the miner refuses a key\n" +
        "file that group or others can read. The miner creates a key on first start if there is none.",
    );

  keys
    .command("generate")
    .description("create a new signing key (refuses to replace an existing one without --force)")
    .option("--state-dir <DIR>", STATE_DIR_HELP)
    .option("--config <FILE>", CONFIG_HELP)
    .option("--force", "replace an existing key (receipts signed with the old key still verify with it)")
    .option("--json", "print the public key as JSON")
    .action((opts: KeysOptions) => {
      const path = stateFiles.key(resolveStateDir(opts.stateDir, opts.config));
      try {
        const key = generateKeyFile(path, { force: opts.force === true });
        print(key, path, opts.json, "generated a new signing key");
      } catch (err) {
        fail(err);
      }
    });

  keys
    .command("show")
    .description("print the public key and key_id (never the private key)")
    .option("--state-dir <DIR>", STATE_DIR_HELP)
    .option("--config <FILE>", CONFIG_HELP)
    .option("--json", "print as JSON: {alg, public_key_hex, key_id, path}")
    .action((opts: KeysOptions) => {
      const path = stateFiles.key(resolveStateDir(opts.stateDir, opts.config));
      try {
        print(loadKeyFile(path), path, opts.json, "signing key");
      } catch (err) {
        fail(err);
      }
    });
}
