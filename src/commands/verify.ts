// `verify <receipt.json>`: check a receipt's Ed25519 signature from the file's raw text (so
// `1.0`, `-0.0` and big integers keep the bytes that were signed). Exit 0 valid, 1 not.
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import {
  DEFAULT_MAX_LENGTH_BYTES,
  describeReceipt,
  type TextVerifyResult,
  verifyReceiptDocument,
} from "../receipts/cli-verify.js";
import { stringifyJson } from "../receipts/json.js";
import { validityText } from "../receipts/verify.js";

interface VerifyCliOptions {
  publicKey?: string;
  keyId?: string;
  json?: boolean;
}

function readInput(file: string): string {
  const bytes = file === "-" ? readFileSync(0) : readFileSync(file);
  if (bytes.length > DEFAULT_MAX_LENGTH_BYTES) {
    throw new Error(`${file} is larger than ${DEFAULT_MAX_LENGTH_BYTES} bytes`);
  }
  return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
}

export function register(program: Command): void {
  program
    .command("verify")
    .description("verify the Ed25519 signature of a receipt (the miner's or a coordinator's)")
    .argument("<receipt.json>", "receipt file ('-' reads stdin); a {receipt: {...}} wrapper is accepted")
    .option("--public-key <HEX>", "require this signer (64 hex digits; a base64url key_id is also accepted)")
    .option("--key-id <B64URL>", "require this signer, as the base64url key_id")
    .option("--json", "print the outcome as JSON")
    .addHelpText(
      "after",
      "\nThe signature object {alg, key_id, sig} sits under `signature` and covers every other field,\n" +
        "canonicalised as Python's json.dumps(drop_none(r), separators=(',', ':'), sort_keys=True).\n" +
        "Without --public-key/--key-id the signature is checked against the key_id it names, which\n" +
        "proves integrity but not who signed: pass the expected key for that.\n" +
        "Exit status: 0 valid, 1 invalid or unreadable.",
    )
    .action((file: string, opts: VerifyCliOptions) => {
      let result: TextVerifyResult;
      try {
        result = verifyReceiptDocument(readInput(file), { publicKey: opts.publicKey, keyId: opts.keyId });
      } catch (err) {
        result = {
          valid: false,
          code: "unparsable",
          reason: `cannot read ${file}: ${(err as Error).message}`,
          receipt: null,
        };
      }
      if (opts.json) {
        const { receipt: _receipt, ...outcome } = result;
        process.stdout.write(`${stringifyJson({ file, ...outcome })}\n`);
      } else if (result.valid) {
        const sep = result.unsignedFields?.length ? "; " : " ";
        process.stdout.write(`${validityText(result)}${sep}${describeReceipt(result)}\n`);
      } else {
        process.stderr.write(`invalid: ${result.reason ?? "unknown reason"}\n`);
      }
      process.exitCode = result.valid ? 0 : 1;
    });
}
