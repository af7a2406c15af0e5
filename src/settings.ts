// Every `run` setting, one row each: its flag, argument, help, the value it takes (a zod schema
// from setting-values.ts) and its default, written once. Everything else is derived from this
// table: config.ts's schema (runSchema) and RunConfig type, the AITBC_* environment name
// (envName), the config-file key (the row's key, or the flag's spelling), `run --help` with the
// default shown, and the deployment tests' list of names. (docs/extending.md#how-to-add-a-setting)
import { availableParallelism, hostname } from "node:os";
import { z } from "zod";
import { DEFAULT_DIALECT, dialectNames, isDialect } from "./coordinator/dialects.js";
import { defaultStateDir } from "./paths.js";
import { bool, decimalIn, decimalUpTo, httpUrl, intIn, text } from "./setting-values.js";

/** systemd credential names (LoadCredential=NAME:PATH) read from $CREDENTIALS_DIRECTORY. */
export const API_KEY_CREDENTIAL = "aitbc-api-key";
export const BEARER_TOKEN_CREDENTIAL = "aitbc-bearer-token";

/** What a row says besides its value: how the operator meets it. */
interface RowText {
  flag: `--${string}`;
  /** The flag's argument in help ("N", "URL"); absent: a switch, which takes none. */
  arg?: string;
  /** What the setting does; the default is appended from the row's default. */
  help: string;
  /** Never echoed in an error (the value is a credential). */
  secret?: boolean;
}

/** One row of the table. `schema` includes the default, so config.ts's schema is the rows' schemas. */
export interface Row<S extends z.ZodType = z.ZodType> extends RowText {
  schema: S;
  /** How `run --help` shows the default; undefined when there is none or it goes without saying (a switch). */
  shownDefault?: string | undefined;
}

/**
 * The flag as commander writes it, "--heartbeat-interval SECONDS", or a switch's flag alone
 * ("--unload-after-job"), split once here so the rest of the code reads `flag` and `arg`.
 */
type FlagSpec = `--${string}`;

/** Never echoed in an error (the value is a credential). */
type Secret = { secret?: true };

function rowText(spec: FlagSpec, help: string, extras: Secret = {}): RowText {
  const m = /^(--[a-z0-9-]+)(?: (\S+))?$/.exec(spec);
  // A malformed spec is a typo in this file: fail at load, before any flag is read.
  if (!m) throw new Error(`settings table: bad flag spec "${spec}" (want "--name" or "--name ARG")`);
  return {
    flag: m[1] as FlagSpec,
    ...(m[2] !== undefined ? { arg: m[2] } : {}),
    help,
    ...(extras.secret ? { secret: true } : {}),
  };
}

/** Required, or empty when absent (no default). */
function plain<S extends z.ZodType>(
  schema: S,
  spec: FlagSpec,
  help: string,
  extras?: Secret,
): Row<z.ZodOptional<S>> {
  return { ...rowText(spec, help, extras), schema: schema.optional() };
}

function required<S extends z.ZodType>(schema: S, spec: FlagSpec, help: string): Row<S> {
  return { ...rowText(spec, help), schema };
}

/**
 * A default value, shown in help as it is (`note` after it: "0 = never"), or a default computed at
 * start (`value` a function) shown as `shown` says ("all cores").
 */
function dflt<S extends z.ZodType>(
  schema: S,
  value: z.output<S> | (() => z.output<S>),
  spec: FlagSpec,
  help: string,
  extras: { note?: string; shown?: string } = {},
): Row<z.ZodDefault<S>> {
  const said = extras.shown ?? String(value);
  return {
    ...rowText(spec, help),
    // zod's generic `default` cannot see that z.output<S> fits it.
    schema: schema.default(value as never),
    shownDefault: extras.note ? `${said}; ${extras.note}` : said,
  };
}

/** A switch: off unless given. */
function toggle(spec: FlagSpec, help: string): Row<z.ZodDefault<typeof bool>> {
  const t = rowText(spec, help);
  if (t.arg !== undefined) throw new Error(`settings table: the switch ${t.flag} takes no argument`);
  return { ...t, schema: bool.default(false) };
}

/** Any dialect in the dialect table, refused as z.enum words it. */
const dialectName = z.custom<string>(isDialect, {
  error: () =>
    `Invalid option: expected one of ${dialectNames()
      .map((n) => JSON.stringify(n))
      .join("|")}`,
});

const minerIdValue = z.string().regex(/^[A-Za-z0-9._:@-]{1,128}$/, "use 1-128 letters, digits or . _ : @ -");
const hostMinerId = () =>
  `${hostname()
    .replace(/[^A-Za-z0-9._-]/g, "-")
    .slice(0, 100)}-miner`;
const webhookUrl = z
  .string()
  .max(2048)
  .url()
  .refine((u) => /^https?:\/\//i.test(u), "must be an http:// or https:// URL");

/**
 * The table, in `run --help` order. The key is the RunConfig field and the config-file key.
 * A row: its value (schema, and the default for dflt), `"--flag ARG"`, the help text.
 */
export const RUN_SETTINGS = {
  coordinator: required(httpUrl, "--coordinator URL", "coordinator base URL (required)"),
  apiKey: plain(
    text(4096),
    "--api-key KEY",
    "miner API key, sent as X-Api-Key (visible in ps to every local user: prefer --api-key-file)",
    { secret: true },
  ),
  apiKeyFile: plain(
    text(),
    "--api-key-file FILE",
    `file holding the API key (not world-readable; default: $CREDENTIALS_DIRECTORY/${API_KEY_CREDENTIAL} under systemd)`,
  ),
  bearerToken: plain(
    text(8192),
    "--bearer-token TOKEN",
    "send Authorization: Bearer TOKEN instead of an API key (visible in ps: prefer --bearer-token-file)",
    { secret: true },
  ),
  bearerTokenFile: plain(
    text(),
    "--bearer-token-file FILE",
    `file holding the bearer token (not world-readable; default: $CREDENTIALS_DIRECTORY/${BEARER_TOKEN_CREDENTIAL})`,
  ),
  minerId: dflt(minerIdValue, hostMinerId, "--miner-id ID", "miner id", { shown: "<hostname>-miner" }),
  protocol: dflt(
    dialectName,
    DEFAULT_DIALECT,
    `--protocol ${dialectNames().join("|")}`,
    "coordinator dialect",
  ),
  backend: dflt(z.enum(["llama", "ollama"]), "llama", "--backend llama|ollama", "inference backend"),
  models: plain(text(), "--models DIR", "models directory: NAME.gguf serves model NAME"),
  modelMap: plain(text(), "--model-map FILE", "JSON file mapping model names to GGUF paths"),
  ollamaUrl: dflt(
    httpUrl,
    "http://127.0.0.1:11434",
    "--ollama-url URL",
    "Ollama server for --backend ollama",
  ),
  ollamaFallback: toggle(
    "--ollama-fallback",
    "serve models only Ollama has through Ollama (llama backend first)",
  ),
  concurrency: dflt(intIn(1, 64), 1, "--concurrency N", "jobs in flight at once"),
  threads: dflt(
    intIn(1, 1024),
    () => Math.max(1, availableParallelism()),
    "--threads N",
    "CPU threads for inference",
    { shown: "all cores" },
  ),
  gpu: dflt(z.enum(["auto", "cpu"]), "auto", "--gpu auto|cpu", "use CUDA when available, or force CPU"),
  allowCpuInference: toggle(
    "--allow-cpu-inference",
    "mine on the CPU (advertising no GPU) when NVML sees GPUs but no GPU runtime starts; without it run exits 69",
  ),
  stateDir: dflt(text(), () => defaultStateDir(), "--state-dir DIR", "keys, outbox, journal, receipts", {
    shown: "$XDG_STATE_HOME/aitbc-native-miner",
  }),
  logLevel: dflt(
    z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]),
    "info",
    "--log-level LEVEL",
    "fatal|error|warn|info|debug|trace|silent",
  ),
  region: plain(text(64), "--region REGION", "region advertised to the coordinator"),
  // Upstream bills 0.02 a unit when a result names no price: the default keeps that bill, and
  // advertising it lets jobs with a max_price (which never match a miner without a price) match.
  price: dflt(
    decimalUpTo(1_000_000),
    0.02,
    "--price PRICE",
    "price per GPU-second (the unit upstream bills): advertised as capabilities.price (what max_price constraints match) and sent with each result as metrics.unit_price",
    { note: "upstream's own default" },
  ),
  coordinatorKey: plain(
    text(),
    "--coordinator-key HEX|B64URL",
    "coordinator public key: verify its receipts",
  ),
  allowInsecureHttp: toggle("--allow-insecure-http", "allow plain http:// to a non-loopback coordinator"),
  unloadAfterJob: toggle("--unload-after-job", "free GPU memory after every job"),
  nvmlLibrary: plain(text(), "--nvml-library PATH", "path of libnvidia-ml.so.1"),
  heartbeatInterval: dflt(intIn(1, 3600), 15, "--heartbeat-interval SECONDS", "seconds between heartbeats"),
  pollsPerMinute: dflt(
    intIn(1, 100_000),
    100,
    "--polls-per-minute N",
    "polls per minute the coordinator allows this host's IP, shared by all its workers; ~90% is spent, 70% of that evenly when idle, the rest right after jobs",
    { note: "the reference limit" },
  ),
  longPoll: dflt(
    intIn(0, 300),
    20,
    "--long-poll SECONDS",
    "max_wait_seconds asked of the coordinator; one that holds polls answers as a job arrives",
    { note: "0 = never" },
  ),
  gpus: dflt(
    text(4096),
    "all",
    "--gpus all|none|LIST",
    "GPUs to mine on, one worker process each: all, none (CPU), or indexes/UUIDs like 0,2",
  ),
  gpuGroups: plain(
    text(4096),
    "--gpu-groups GROUPS",
    'cards that serve as one worker, layers split across them, e.g. "0,1;2,3"',
  ),
  minerIdTemplate: dflt(
    text(200),
    "{id}-gpu{n}",
    "--miner-id-template TEMPLATE",
    "each worker's miner id on a multi-GPU host: {id} the miner id, {n} its GPU indexes, {uuid} its first GPU's UUID",
  ),
  preload: dflt(
    text(4096),
    "all",
    "--preload NAMES",
    "models loaded before the first job: all (largest first, as many as fit), none, or a comma list in order",
  ),
  jobTimeout: dflt(intIn(1, 86_400), 300, "--job-timeout SECONDS", "hard deadline per job"),
  gracePeriod: dflt(
    intIn(0, 3600),
    30,
    "--grace-period SECONDS",
    "on SIGTERM, time to finish in-flight jobs",
  ),
  requestTimeout: dflt(intIn(1, 600), 15, "--request-timeout SECONDS", "per-request coordinator timeout"),
  maxPromptChars: dflt(intIn(1, 10_000_000), 32_768, "--max-prompt-chars N", "longest prompt accepted"),
  maxTokens: dflt(intIn(1, 1_000_000), 4096, "--max-tokens N", "largest max_tokens accepted"),
  contextSize: plain(intIn(64, 1_048_576), "--context-size N", "llama context size per sequence"),
  metricsPort: plain(
    intIn(0, 65_535),
    "--metrics-port PORT",
    "serve Prometheus metrics on this port (off by default)",
  ),
  metricsHost: dflt(text(), "127.0.0.1", "--metrics-host HOST", "address for --metrics-port"),
  alertWebhook: plain(
    webhookUrl,
    "--alert-webhook URL",
    "POST alerts as JSON with a Slack-compatible text field to this URL (a card drained or back, a crash loop, the state directory full, no jobs, earnings stalled, credentials refused)",
    { secret: true },
  ),
  alertNoJobMinutes: dflt(
    decimalIn(0.1, 10_080),
    30,
    "--alert-no-job-minutes MINUTES",
    "alert when no job was handed out for this long although polls are answered",
  ),
  alertEarningsStalledMinutes: dflt(
    decimalIn(0.1, 10_080),
    60,
    "--alert-earnings-stalled-minutes MINUTES",
    "alert when nothing was earned for this long although jobs complete, after results were accepted before",
  ),
};

export type RunSettings = typeof RUN_SETTINGS;
export type RunConfigKey = keyof RunSettings;

/** A row as the CLI, config.ts and the deployment tests read it. */
export interface SettingSpec {
  key: RunConfigKey;
  flag: string;
  arg?: string;
  /** The help text with the default appended ("... (default: 15)"). */
  help: string;
  secret?: boolean;
  /** The environment twin: `--model-map` → `AITBC_MODEL_MAP`. */
  env: string;
}

/** `--model-map` → `AITBC_MODEL_MAP` */
export function envName(spec: Pick<SettingSpec, "flag">): string {
  return `AITBC_${spec.flag.replace(/^--/, "").replace(/-/g, "_").toUpperCase()}`;
}

/** A row's environment twin: `stateDir` → `AITBC_STATE_DIR`. */
export function envOf(key: RunConfigKey): string {
  return envName(RUN_SETTINGS[key]);
}

/**
 * A setting read from its environment twin alone, as `run` parses it, for commands that take no
 * run flags (telemetry); its default when absent or not valid there (run would refuse that value).
 */
export function fromEnv<K extends RunConfigKey>(
  key: K,
  env: NodeJS.ProcessEnv = process.env,
): z.output<RunSettings[K]["schema"]> {
  const schema: z.ZodType = RUN_SETTINGS[key].schema;
  const r = schema.safeParse(env[envOf(key)]);
  return (r.success ? r.data : schema.parse(undefined)) as z.output<RunSettings[K]["schema"]>;
}

/** --config is no row (it says where the rows are read from), but its twin follows the same rule. */
export const CONFIG_ENV = envName({ flag: "--config" });

export const SETTINGS: SettingSpec[] = (Object.entries(RUN_SETTINGS) as [RunConfigKey, Row][]).map(
  ([key, row]) => ({
    key,
    flag: row.flag,
    ...(row.arg !== undefined ? { arg: row.arg } : {}),
    help: row.shownDefault === undefined ? row.help : `${row.help} (default: ${row.shownDefault})`,
    ...(row.secret ? { secret: true } : {}),
    env: envName(row),
  }),
);

/** The zod shape of the table: each row's schema under its key. */
export function settingsShape(): { [K in RunConfigKey]: RunSettings[K]["schema"] } {
  return Object.fromEntries(Object.entries(RUN_SETTINGS).map(([k, row]) => [k, row.schema])) as {
    [K in RunConfigKey]: RunSettings[K]["schema"];
  };
}
