// The miner's signing key on disk: a JSON file, mode 0600, written atomically; a key file that
// group or others can read is refused (the key is what gets the operator paid).

import { randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { dirname } from "node:path";
import type { Logger } from "../log.js";
import { stateFiles } from "../paths.js";
import { registerSecret } from "../secrets.js";
import { generateKeyPair, keyFromSeed, type SigningKey } from "./crypto.js";

export class KeyFileError extends Error {
  override readonly name = "KeyFileError";
  constructor(
    message: string,
    readonly path: string,
    readonly code: "missing" | "permissions" | "invalid" | "exists" | "io",
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

interface KeyFileFields {
  alg: "Ed25519";
  private_key_hex: string;
  public_key_hex: string;
  key_id?: string;
  created_at?: string;
}

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * Check a key file's JSON by hand (no schema library: `keys show` and `verify` start fast).
 * Returns the fields, or which one is wrong; never the value.
 */
function readKeyFields(v: unknown): KeyFileFields | string {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return "file: expected a JSON object";
  const o = v as Record<string, unknown>;
  if (o["alg"] !== "Ed25519") return 'alg: expected "Ed25519"';
  for (const k of ["private_key_hex", "public_key_hex"] as const) {
    if (typeof o[k] !== "string" || !HEX64.test(o[k] as string)) return `${k}: 64 lowercase hex digits`;
  }
  for (const k of ["key_id", "created_at"] as const) {
    if (o[k] !== undefined && typeof o[k] !== "string") return `${k}: expected a string`;
  }
  return o as unknown as KeyFileFields;
}

const MAX_KEY_FILE_BYTES = 64 * 1024;

function errnoCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err ? String(err.code) : undefined;
}

/** Read and check a key file: owner-only mode, well-formed, public key matching the private one. */
export function loadKeyFile(path: string): SigningKey {
  let mode: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new KeyFileError(`key file ${path} is not a regular file`, path, "invalid");
    if (st.size > MAX_KEY_FILE_BYTES)
      throw new KeyFileError(`key file ${path} is too large`, path, "invalid");
    mode = st.mode;
  } catch (err) {
    if (err instanceof KeyFileError) throw err;
    if (errnoCode(err) === "ENOENT") {
      throw new KeyFileError(
        `no key file at ${path} (run: aitbc-native-miner keys generate)`,
        path,
        "missing",
      );
    }
    throw new KeyFileError(`cannot read key file ${path}: ${(err as Error).message}`, path, "io", {
      cause: err,
    });
  }
  if (process.platform !== "win32" && (mode & 0o077) !== 0) {
    throw new KeyFileError(
      `key file ${path} is readable by group/others (mode ${(mode & 0o777).toString(8).padStart(4, "0")}); ` +
        `it holds the private signing key: run \`chmod 600 ${path}\``,
      path,
      "permissions",
    );
  }
  let parsed: KeyFileFields;
  try {
    const result = readKeyFields(JSON.parse(readFileSync(path, "utf8")));
    if (typeof result === "string") throw new Error(result);
    parsed = result;
  } catch (err) {
    // Never echo the file content: it holds the private key. JSON.parse's message quotes the
    // text around the error, so a syntax error is reported without it.
    const why =
      err instanceof SyntaxError
        ? "not JSON; it should be the file that `aitbc-native-miner keys generate` writes"
        : (err as Error).message;
    throw new KeyFileError(`key file ${path} is not a valid key file (${why})`, path, "invalid");
  }
  registerSecret(parsed.private_key_hex);
  const key = keyFromSeed(new Uint8Array(Buffer.from(parsed.private_key_hex, "hex")));
  if (key.publicKeyHex !== parsed.public_key_hex) {
    throw new KeyFileError(
      `key file ${path} is corrupt: its public key does not belong to its private key`,
      path,
      "invalid",
    );
  }
  return key;
}

function keyFileText(key: SigningKey): string {
  const doc = {
    alg: "Ed25519",
    private_key_hex: Buffer.from(key.secretKey).toString("hex"),
    public_key_hex: key.publicKeyHex,
    key_id: key.keyId,
    created_at: new Date().toISOString(),
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

export interface GenerateOptions {
  /** Replace an existing key file (the old key is lost). */
  force?: boolean;
}

/**
 * Write a new key file: temp file (0600, fsync) then link (refuses to replace, atomically) or,
 * with force, rename over the old one. The directory is created 0700.
 */
export function generateKeyFile(path: string, opts: GenerateOptions = {}): SigningKey {
  const dir = dirname(path);
  const key = generateKeyPair();
  registerSecret(Buffer.from(key.secretKey).toString("hex"));
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const fd = openSync(tmp, "wx", 0o600);
    try {
      writeSync(fd, keyFileText(key));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (opts.force) {
      renameSync(tmp, path);
    } else {
      try {
        linkSync(tmp, path);
      } finally {
        unlinkSync(tmp);
      }
    }
    syncDir(dir);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
    if (errnoCode(err) === "EEXIST") {
      throw new KeyFileError(
        `key file ${path} already exists; pass --force to replace it (the old key is lost)`,
        path,
        "exists",
      );
    }
    throw new KeyFileError(`cannot write key file ${path}: ${(err as Error).message}`, path, "io", {
      cause: err,
    });
  }
  return key;
}

function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // some filesystems refuse fsync on a directory; the rename/link itself is still atomic
  }
}

/** The key in `stateDir`, generated on first start. Logs the public part only. */
export async function loadOrCreateKey(
  stateDir: string,
  log: Logger,
): Promise<{ key: SigningKey; created: boolean; path: string }> {
  const path = stateFiles.key(stateDir);
  let key: SigningKey;
  let created = false;
  try {
    key = loadKeyFile(path);
  } catch (err) {
    if (!(err instanceof KeyFileError) || err.code !== "missing") throw err;
    try {
      key = generateKeyFile(path);
      created = true;
    } catch (genErr) {
      // another process created it between our read and our write: use theirs
      if (genErr instanceof KeyFileError && genErr.code === "exists") key = loadKeyFile(path);
      else throw genErr;
    }
  }
  log.info(
    { event: "signing_key", keyId: key.keyId, publicKeyHex: key.publicKeyHex, path, created },
    created ? "generated a new receipt signing key" : "loaded the receipt signing key",
  );
  return { key, created, path };
}
