// Run configuration: flags > environment (AITBC_*) > config file (--config) > defaults,
// validated once at start. A bad setting is one clear line naming it (exit code 2).
// Units: every duration a setting holds is in seconds (heartbeatInterval, jobTimeout,
// gracePeriod, requestTimeout, longPoll); the miner's own settings (MinerSettings) carry the unit
// in the name (…Ms) and compose.ts converts once.
import { readFileSync, statSync } from "node:fs";
import { availableParallelism, hostname } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { ConfigError, readConfigFile } from "./config-file.js";
import { DEFAULT_DIALECT, dialectNames, dialectTraits, isDialect } from "./coordinator/dialects.js";
import { defaultStateDir } from "./paths.js";
import { parsePublicKey } from "./receipts/index.js";
import { redactUrlCredentials } from "./redact.js";
import { API_KEY_CREDENTIAL, BEARER_TOKEN_CREDENTIAL, envName, SETTINGS } from "./settings.js";

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

const httpUrl = z
  .string()
  .trim()
  .refine((s) => {
    try {
      const u = new URL(s);
      return (u.protocol === "http:" || u.protocol === "https:") && u.hostname !== "";
    } catch {
      return false;
    }
  }, "must be an http:// or https:// URL")
  .transform((s) => s.replace(/\/+$/, ""));

// Integers are plain decimal digits: Number() would take "0x10", "1e1" or " 16 " as well.
const DECIMAL_INT = /^\d{1,15}$/;
const intIn = (min: number, max: number) =>
  z.preprocess(
    (v) => (typeof v === "string" && DECIMAL_INT.test(v) ? Number(v) : v),
    z
      .number({ error: `must be a whole number in [${min}, ${max}] (decimal digits)` })
      .int(`must be a whole number in [${min}, ${max}]`)
      .min(min, `must be a whole number in [${min}, ${max}]`)
      .max(max, `must be a whole number in [${min}, ${max}]`),
  );
const decimal = z.preprocess(
  (v) => (typeof v === "string" && /^\d{1,15}(\.\d{1,15})?$/.test(v) ? Number(v) : v),
  z.number({ error: "must be a decimal number such as 0.25" }).nonnegative(),
);

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
const bool = z.union([z.boolean(), z.enum(["true", "false", "1", "0", "yes", "no"])]).transform((v) => {
  if (typeof v === "boolean") return v;
  return v === "true" || v === "1" || v === "yes";
});

export const runSchema = z
  .object({
    coordinator: httpUrl,
    apiKey: z.string().min(1).max(4096).optional(),
    apiKeyFile: z.string().min(1).optional(),
    bearerToken: z.string().min(1).max(8192).optional(),
    bearerTokenFile: z.string().min(1).optional(),
    minerId: z
      .string()
      .regex(/^[A-Za-z0-9._:@-]{1,128}$/, "use 1-128 letters, digits or . _ : @ -")
      .default(
        () =>
          `${hostname()
            .replace(/[^A-Za-z0-9._-]/g, "-")
            .slice(0, 100)}-miner`,
      ),
    // Any dialect in the table (src/coordinator/dialects.ts), as z.enum would word a refusal.
    protocol: z
      .custom<string>(isDialect, {
        error: () =>
          `Invalid option: expected one of ${dialectNames()
            .map((n) => JSON.stringify(n))
            .join("|")}`,
      })
      .default(DEFAULT_DIALECT),
    backend: z.enum(["llama", "ollama"]).default("llama"),
    models: z.string().min(1).optional(),
    modelMap: z.string().min(1).optional(),
    ollamaUrl: httpUrl.default("http://127.0.0.1:11434"),
    ollamaFallback: bool.default(false),
    concurrency: intIn(1, 64).default(1),
    threads: intIn(1, 1024).default(() => Math.max(1, availableParallelism())),
    gpu: z.enum(["auto", "cpu"]).default("auto"),
    allowCpuInference: bool.default(false),
    stateDir: z
      .string()
      .min(1)
      .default(() => defaultStateDir()),
    logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    region: z.string().min(1).max(64).optional(),
    // Upstream bills 0.02 a unit when a result names no price: the default keeps that bill, and
    // advertising it lets jobs with a max_price (which never match a miner without a price) match.
    price: decimal.refine((n) => n <= 1_000_000, "must be at most 1000000").default(0.02),
    coordinatorKey: z.string().min(1).optional(),
    allowInsecureHttp: bool.default(false),
    unloadAfterJob: bool.default(false),
    nvmlLibrary: z.string().min(1).optional(),
    heartbeatInterval: intIn(1, 3600).default(15),
    pollsPerMinute: intIn(1, 100_000).default(100),
    longPoll: intIn(0, 300).default(20),
    preload: z.string().min(1).max(4096).default("all"),
    gpus: z.string().min(1).max(4096).default("all"),
    gpuGroups: z.string().min(1).max(4096).optional(),
    minerIdTemplate: z.string().min(1).max(200).default("{id}-gpu{n}"),
    jobTimeout: intIn(1, 86_400).default(300),
    gracePeriod: intIn(0, 3600).default(30),
    requestTimeout: intIn(1, 600).default(15),
    maxPromptChars: intIn(1, 10_000_000).default(32_768),
    maxTokens: intIn(1, 1_000_000).default(4096),
    contextSize: intIn(64, 1_048_576).optional(),
    metricsPort: intIn(0, 65_535).optional(),
    metricsHost: z.string().min(1).default("127.0.0.1"),
    alertWebhook: z
      .string()
      .max(2048)
      .url()
      .refine((u) => /^https?:\/\//i.test(u), "must be an http:// or https:// URL")
      .optional(),
    alertNoJobMinutes: intIn(1, 10_080).default(30),
    alertEarningsStalledMinutes: intIn(1, 10_080).default(60),
  })
  .strict();

export type RunConfig = z.infer<typeof runSchema>;
export type RunConfigKey = keyof RunConfig;

const flagByKey = new Map(SETTINGS.map((s) => [s.key, s.flag]));

export interface ResolveInput {
  /** Values given as flags (only those the operator actually typed). */
  flags: Partial<Record<RunConfigKey, unknown>>;
  env?: NodeJS.ProcessEnv;
  configFile?: string | undefined;
}

/** Merge the sources and validate. Throws ConfigError with one line naming the setting. */
export function resolveRunConfig(input: ResolveInput): RunConfig {
  const env = input.env ?? process.env;
  const configPath = input.configFile ?? env["AITBC_CONFIG"];
  const merged: Record<string, unknown> = configPath ? readConfigFile(configPath) : {};
  for (const spec of SETTINGS) {
    const v = env[envName(spec)];
    if (v !== undefined && v !== "") merged[spec.key] = v;
  }
  for (const [k, v] of Object.entries(input.flags)) if (v !== undefined) merged[k] = v;

  const parsed = runSchema.safeParse(merged);
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
    const flag = typeof key === "string" ? (flagByKey.get(key as RunConfigKey) ?? key) : "config";
    const envHint = typeof key === "string" ? SETTINGS.find((s) => s.key === key) : undefined;
    const missing = issue.code === "invalid_type" && merged[key as string] === undefined;
    throw new ConfigError(
      missing
        ? `${flag} is required${envHint ? ` (or set ${envName(envHint)})` : ""}`
        : `${flag}: ${issue.message}${shown(key)}`,
    );
  }
  const cfg = parsed.data;
  Object.assign(cfg, resolveSecretFiles(cfg, env));
  checkCoherence(cfg);
  return cfg;
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
  return SETTINGS.some((s) => s.key === key && s.secret);
}

function checkCoherence(cfg: RunConfig): void {
  if (dialectTraits(cfg.protocol).authRequired && !cfg.apiKey && !cfg.bearerToken) {
    throw new ConfigError(
      `an API key is required for --protocol ${cfg.protocol}: --api-key-file FILE, AITBC_API_KEY_FILE or AITBC_API_KEY`,
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
