// Run configuration: flags > environment (AITBC_*) > config file (--config) > defaults,
// validated once at start. A bad setting is one clear line naming it (exit code 2).
// Units: every duration a setting holds is in seconds (heartbeatInterval, jobTimeout,
// gracePeriod, requestTimeout, longPoll); the miner's own settings (MinerSettings) carry the unit
// in the name (…Ms) and compose.ts converts once.
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { ConfigError, readConfigFile } from "./config-file.js";
import { dialectTraits } from "./coordinator/dialects.js";
import { parsePublicKey } from "./receipts/index.js";
import { redactUrlCredentials } from "./redact.js";
import { DECIMAL_INT } from "./setting-values.js";
import {
  API_KEY_CREDENTIAL,
  BEARER_TOKEN_CREDENTIAL,
  CONFIG_ENV,
  envOf,
  type RunConfigKey,
  SETTINGS,
  settingsShape,
} from "./settings.js";

export { ConfigError } from "./config-file.js";
export {
  API_KEY_CREDENTIAL,
  BEARER_TOKEN_CREDENTIAL,
  envName,
  SETTINGS,
  type SettingSpec,
} from "./settings.js";

const LOOPBACK = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\])$/i;

export function isLoopbackUrl(url: URL): boolean {
  return LOOPBACK.test(url.hostname) || url.hostname === "::1";
}

/**
 * The one integer-flag parser for every command: decimal digits only, inside [min, max].
 * A bad value is a ConfigError (exit code 2) naming the flag.
 */
export function parseIntFlag(flag: string, value: string, min: number, max: number): number {
  const n = DECIMAL_INT.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(
      `${flag} must be a whole number in [${min}, ${max}] written in decimal digits (got ${JSON.stringify(redactUrlCredentials(value))})`,
    );
  }
  return n;
}

/** Every setting's value and default, from the settings table (src/settings.ts). */
export const runSchema = z.object(settingsShape()).strict();

export type RunConfig = z.infer<typeof runSchema>;
export type { RunConfigKey };

const specByKey = new Map(SETTINGS.map((s) => [s.key as string, s]));

export interface ResolveInput {
  /** Values given as flags (only those the operator actually typed). */
  flags: Partial<Record<RunConfigKey, unknown>>;
  env?: NodeJS.ProcessEnv;
  configFile?: string | undefined;
}

/** Merge the sources and validate. Throws ConfigError with one line naming the setting. */
export function resolveRunConfig(input: ResolveInput): RunConfig {
  const cfg = parseMerged(runSchema, mergeSources(input));
  Object.assign(cfg, resolveSecretFiles(cfg, input.env ?? process.env));
  checkCoherence(cfg);
  return cfg;
}

/** run's settings without a default (coordinator): run refuses to start without them. */
type RequiredKey = {
  [P in RunConfigKey]-?: undefined extends z.input<typeof runSchema>[P] ? never : P;
}[RunConfigKey];

/** Some of run's settings as run reads them, none required: an absent required one is undefined. */
export type SomeRunSettings<K extends RunConfigKey> = Omit<Pick<RunConfig, K>, RequiredKey> &
  Partial<Pick<RunConfig, K & RequiredKey>>;

/**
 * Some of run's settings (doctor's), from the same sources in the same order, parsed and refused
 * exactly as run parses them; the file's other settings are run's business, left unread.
 */
export function resolveRunSettings<K extends RunConfigKey>(
  keys: readonly K[],
  input: ResolveInput,
): SomeRunSettings<K> {
  // Every setting given (flags, AITBC_* variables, the file) is checked as run checks it, so a
  // misspelled key or a value out of range is refused here too; only none is required.
  const all: Record<string, unknown> = parseMerged(runSchema.partial(), mergeSources(input));
  return Object.fromEntries(keys.map((k) => [k, all[k]])) as SomeRunSettings<K>;
}

/** flags > environment (an empty variable is unset) > config file. */
function mergeSources(input: ResolveInput): Record<string, unknown> {
  const env = input.env ?? process.env;
  const configPath = input.configFile ?? env[CONFIG_ENV];
  const merged: Record<string, unknown> = configPath ? readConfigFile(configPath) : {};
  for (const spec of SETTINGS) {
    const v = env[spec.env];
    if (v !== undefined && v !== "") merged[spec.key] = v;
  }
  for (const [k, v] of Object.entries(input.flags)) if (v !== undefined) merged[k] = v;
  return merged;
}

function parseMerged<S extends z.ZodType>(schema: S, merged: Record<string, unknown>): z.output<S> {
  const parsed = schema.safeParse(merged);
  if (!parsed.success) {
    // A secret never goes into an error, and URL credentials are masked in any value shown.
    const shown = (k: PropertyKey | undefined) =>
      isSecretKey(k) ? "" : ` (got ${redactUrlCredentials(JSON.stringify(merged[k as string]) ?? "")})`;
    const issue = parsed.error.issues[0]!;
    const key = issue.path[0];
    if (issue.code === "unrecognized_keys") {
      throw new ConfigError(
        `config file: unknown setting ${issue.keys.map((k) => JSON.stringify(k)).join(", ")}`,
      );
    }
    const spec = typeof key === "string" ? specByKey.get(key) : undefined;
    const flag = typeof key === "string" ? (spec?.flag ?? key) : "config";
    const missing = issue.code === "invalid_type" && merged[key as string] === undefined;
    throw new ConfigError(
      missing
        ? `${flag} is required${spec ? ` (or set ${spec.env})` : ""}`
        : `${flag}: ${issue.message}${shown(key)}`,
    );
  }
  return parsed.data;
}

export interface SecretSources {
  apiKey?: string | undefined;
  apiKeyFile?: string | undefined;
  bearerToken?: string | undefined;
  bearerTokenFile?: string | undefined;
}

/**
 * API key and bearer token from a value, a file (--api-key-file) or systemd's
 * $CREDENTIALS_DIRECTORY (LoadCredential=aitbc-api-key:...), in that order. Shared by run and doctor.
 */
export function resolveSecretFiles(
  src: SecretSources,
  env: NodeJS.ProcessEnv = process.env,
): { apiKey?: string; bearerToken?: string } {
  const credDir = env["CREDENTIALS_DIRECTORY"];
  const pick = (
    value: string | undefined,
    file: string | undefined,
    flag: string,
    credential: string,
    max: number,
  ): string | undefined => {
    if (value !== undefined && value !== "" && file) {
      throw new ConfigError(`${flag} and ${flag}-file are both set; keep one`);
    }
    if (value) return value;
    if (file) return readSecretFile(file, `${flag}-file`, max);
    if (credDir) {
      const path = join(credDir, credential);
      if (fileExists(path)) return readSecretFile(path, `$CREDENTIALS_DIRECTORY/${credential}`, max);
    }
    return undefined;
  };
  const out: { apiKey?: string; bearerToken?: string } = {};
  const apiKey = pick(src.apiKey, src.apiKeyFile, "--api-key", API_KEY_CREDENTIAL, 4096);
  if (apiKey !== undefined) out.apiKey = apiKey;
  const bearerToken = pick(
    src.bearerToken,
    src.bearerTokenFile,
    "--bearer-token",
    BEARER_TOKEN_CREDENTIAL,
    8192,
  );
  if (bearerToken !== undefined) out.bearerToken = bearerToken;
  return out;
}

function fileExists(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Read a one-line secret file. Its content never appears in an error. */
function readSecretFile(path: string, what: string, max: number): string {
  let text: string;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new ConfigError(`${what}: ${path} is not a regular file`);
    if (process.platform !== "win32" && (st.mode & 0o007) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, "0");
      throw new ConfigError(
        `${what}: ${path} is readable by every local user (mode ${mode}); it holds a secret: run \`chmod 600 ${path}\``,
      );
    }
    if (st.size > max + 2)
      throw new ConfigError(`${what}: ${path} is too large for a key (over ${max} bytes)`);
    text = readFileSync(path, "utf8");
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(
      `${what}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? "error"}; check the path and its owner`,
    );
  }
  // `echo KEY > file` leaves a newline; it is not part of the key.
  const value = text.replace(/(\r?\n)+$/, "");
  if (value === "" || /[\r\n]/.test(value)) {
    throw new ConfigError(`${what}: ${path} must hold the secret on one line`);
  }
  if (value.length > max)
    throw new ConfigError(`${what}: ${path} is too large for a key (over ${max} bytes)`);
  return value;
}

function isSecretKey(key: PropertyKey | undefined): boolean {
  return typeof key === "string" && specByKey.get(key)?.secret === true;
}

function checkCoherence(cfg: RunConfig): void {
  if (dialectTraits(cfg.protocol).authRequired && !cfg.apiKey && !cfg.bearerToken) {
    throw new ConfigError(
      `an API key is required for --protocol ${cfg.protocol}: --api-key-file FILE, ${envOf("apiKeyFile")} or ${envOf("apiKey")}`,
    );
  }
  if (cfg.backend === "llama" && !cfg.models && !cfg.modelMap) {
    throw new ConfigError(
      "--models is required for --backend llama (a directory of NAME.gguf files), or --model-map",
    );
  }
  for (const [flag, path, kind] of [
    ["--models", cfg.models, "directory"],
    ["--model-map", cfg.modelMap, "file"],
  ] as const) {
    if (!path) continue;
    let ok = false;
    try {
      const st = statSync(path);
      ok = kind === "directory" ? st.isDirectory() : st.isFile();
    } catch {
      ok = false;
    }
    if (!ok) throw new ConfigError(`${flag}: ${path} is not an existing ${kind}`);
  }
  if (cfg.coordinatorKey) {
    try {
      parsePublicKey(cfg.coordinatorKey);
    } catch (err) {
      throw new ConfigError(`--coordinator-key: ${(err as Error).message}`);
    }
  }
  checkCoordinatorUrl(cfg.coordinator, cfg.allowInsecureHttp);
}

/**
 * The rule for where credentials may go, shared by run and doctor: plain http:// only to a
 * loopback coordinator unless the operator passed --allow-insecure-http.
 */
export function checkCoordinatorUrl(coordinator: string, allowInsecureHttp: boolean): URL {
  let url: URL;
  try {
    url = new URL(coordinator);
  } catch {
    throw new ConfigError(
      `--coordinator: must be an http:// or https:// URL (got ${JSON.stringify(redactUrlCredentials(coordinator))})`,
    );
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || url.hostname === "") {
    throw new ConfigError(
      `--coordinator: must be an http:// or https:// URL (got ${JSON.stringify(redactUrlCredentials(coordinator))})`,
    );
  }
  if (url.protocol === "http:" && !isLoopbackUrl(url) && !allowInsecureHttp) {
    throw new ConfigError(
      `--coordinator: plain http:// to ${url.hostname} would send the API key in clear text; use https:// or pass --allow-insecure-http`,
    );
  }
  return url;
}
