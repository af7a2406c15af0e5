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

/** Required, or empty when absent (no default). */
function plain<S extends z.ZodType>(schema: S, t: RowText): Row<z.ZodOptional<S>> {
  return { ...t, schema: schema.optional() };
}

function required<S extends z.ZodType>(schema: S, t: RowText): Row<S> {
  return { ...t, schema };
}

/**
 * A default value, shown in help as it is (`note` after it: "0 = never"), or a default computed at
 * start (`value` a function) shown as `shown` says ("all cores").
 */
function dflt<S extends z.ZodType>(
  schema: S,
  value: z.output<S> | (() => z.output<S>),
  t: RowText & { note?: string; shown?: string },
): Row<z.ZodDefault<S>> {
  const { note, shown, ...rest } = t;
  const said = shown ?? String(value);
  return {
    ...rest,
    // zod's generic `default` cannot see that z.output<S> fits it.
    schema: schema.default(value as never),
    shownDefault: note ? `${said}; ${note}` : said,
  };
}

/** A switch: off unless given. */
function toggle(t: Omit<RowText, "arg">): Row<z.ZodDefault<typeof bool>> {
  return { ...t, schema: bool.default(false) };
}

/** Any dialect in the dialect table, refused as z.enum words it. */
const dialectName = z.custom<string>(isDialect, {
  error: () =>
    `Invalid option: expected one of ${dialectNames()
      .map((n) => JSON.stringify(n))
      .join("|")}`,
});

/** The table, in `run --help` order. The key is the RunConfig field and the config-file key. */
export const RUN_SETTINGS = {
  coordinator: required(httpUrl, {
    flag: "--coordinator",
    arg: "URL",
    help: "coordinator base URL (required)",
  }),
  apiKey: plain(text(4096), {
    flag: "--api-key",
    arg: "KEY",
    help: "miner API key, sent as X-Api-Key (visible in ps to every local user: prefer --api-key-file)",
    secret: true,
  }),
  apiKeyFile: plain(text(), {
    flag: "--api-key-file",
    arg: "FILE",
    help: `file holding the API key (not world-readable; default: $CREDENTIALS_DIRECTORY/${API_KEY_CREDENTIAL} under systemd)`,
  }),
  bearerToken: plain(text(8192), {
    flag: "--bearer-token",
    arg: "TOKEN",
    help: "send Authorization: Bearer TOKEN instead of an API key (visible in ps: prefer --bearer-token-file)",
    secret: true,
  }),
  bearerTokenFile: plain(text(), {
    flag: "--bearer-token-file",
    arg: "FILE",
    help: `file holding the bearer token (not world-readable; default: $CREDENTIALS_DIRECTORY/${BEARER_TOKEN_CREDENTIAL})`,
  }),
  minerId: dflt(
    z.string().regex(/^[A-Za-z0-9._:@-]{1,128}$/, "use 1-128 letters, digits or . _ : @ -"),
    () =>
      `${hostname()
        .replace(/[^A-Za-z0-9._-]/g, "-")
        .slice(0, 100)}-miner`,
    { flag: "--miner-id", arg: "ID", help: "miner id", shown: "<hostname>-miner" },
  ),
  protocol: dflt(dialectName, DEFAULT_DIALECT, {
    flag: "--protocol",
    arg: dialectNames().join("|"),
    help: "coordinator dialect",
  }),
  backend: dflt(z.enum(["llama", "ollama"]), "llama", {
    flag: "--backend",
    arg: "llama|ollama",
    help: "inference backend",
  }),
  models: plain(text(), {
    flag: "--models",
    arg: "DIR",
    help: "models directory: NAME.gguf serves model NAME",
  }),
  modelMap: plain(text(), {
    flag: "--model-map",
    arg: "FILE",
    help: "JSON file mapping model names to GGUF paths",
  }),
  ollamaUrl: dflt(httpUrl, "http://127.0.0.1:11434", {
    flag: "--ollama-url",
    arg: "URL",
    help: "Ollama server for --backend ollama",
  }),
  ollamaFallback: toggle({
    flag: "--ollama-fallback",
    help: "serve models only Ollama has through Ollama (llama backend first)",
  }),
  concurrency: dflt(intIn(1, 64), 1, { flag: "--concurrency", arg: "N", help: "jobs in flight at once" }),
  threads: dflt(intIn(1, 1024), () => Math.max(1, availableParallelism()), {
    flag: "--threads",
    arg: "N",
    help: "CPU threads for inference",
    shown: "all cores",
  }),
  gpu: dflt(z.enum(["auto", "cpu"]), "auto", {
    flag: "--gpu",
    arg: "auto|cpu",
    help: "use CUDA when available, or force CPU",
  }),
  allowCpuInference: toggle({
    flag: "--allow-cpu-inference",
    help: "mine on the CPU (advertising no GPU) when NVML sees GPUs but no GPU runtime starts; without it run exits 69",
  }),
  stateDir: dflt(text(), () => defaultStateDir(), {
    flag: "--state-dir",
    arg: "DIR",
    help: "keys, outbox, journal, receipts",
    shown: "$XDG_STATE_HOME/aitbc-native-miner",
  }),
  logLevel: dflt(z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]), "info", {
    flag: "--log-level",
    arg: "LEVEL",
    help: "fatal|error|warn|info|debug|trace|silent",
  }),
  region: plain(text(64), { flag: "--region", arg: "REGION", help: "region advertised to the coordinator" }),
  // Upstream bills 0.02 a unit when a result names no price: the default keeps that bill, and
  // advertising it lets jobs with a max_price (which never match a miner without a price) match.
  price: dflt(decimalUpTo(1_000_000), 0.02, {
    flag: "--price",
    arg: "PRICE",
    help: "price per GPU-second (the unit upstream bills): advertised as capabilities.price (what max_price constraints match) and sent with each result as metrics.unit_price",
    note: "upstream's own default",
  }),
  coordinatorKey: plain(text(), {
    flag: "--coordinator-key",
    arg: "HEX|B64URL",
    help: "coordinator public key: verify its receipts",
  }),
  allowInsecureHttp: toggle({
    flag: "--allow-insecure-http",
    help: "allow plain http:// to a non-loopback coordinator",
  }),
  unloadAfterJob: toggle({ flag: "--unload-after-job", help: "free GPU memory after every job" }),
  nvmlLibrary: plain(text(), { flag: "--nvml-library", arg: "PATH", help: "path of libnvidia-ml.so.1" }),
  heartbeatInterval: dflt(intIn(1, 3600), 15, {
    flag: "--heartbeat-interval",
    arg: "SECONDS",
    help: "seconds between heartbeats",
  }),
  pollsPerMinute: dflt(intIn(1, 100_000), 100, {
    flag: "--polls-per-minute",
    arg: "N",
    help: "polls per minute the coordinator allows this host's IP, shared by all its workers; ~90% is spent, 70% of that evenly when idle, the rest right after jobs",
    note: "the reference limit",
  }),
  longPoll: dflt(intIn(0, 300), 20, {
    flag: "--long-poll",
    arg: "SECONDS",
    help: "max_wait_seconds asked of the coordinator; one that holds polls answers as a job arrives",
    note: "0 = never",
  }),
  gpus: dflt(text(4096), "all", {
    flag: "--gpus",
    arg: "all|none|LIST",
    help: "GPUs to mine on, one worker process each: all, none (CPU), or indexes/UUIDs like 0,2",
  }),
  gpuGroups: plain(text(4096), {
    flag: "--gpu-groups",
    arg: "GROUPS",
    help: 'cards that serve as one worker, layers split across them, e.g. "0,1;2,3"',
  }),
  minerIdTemplate: dflt(text(200), "{id}-gpu{n}", {
    flag: "--miner-id-template",
    arg: "TEMPLATE",
    help: "each worker's miner id on a multi-GPU host: {id} the miner id, {n} its GPU indexes, {uuid} its first GPU's UUID",
  }),
  preload: dflt(text(4096), "all", {
    flag: "--preload",
    arg: "NAMES",
    help: "models loaded before the first job: all (largest first, as many as fit), none, or a comma list in order",
  }),
  jobTimeout: dflt(intIn(1, 86_400), 300, {
    flag: "--job-timeout",
    arg: "SECONDS",
    help: "hard deadline per job",
  }),
  gracePeriod: dflt(intIn(0, 3600), 30, {
    flag: "--grace-period",
    arg: "SECONDS",
    help: "on SIGTERM, time to finish in-flight jobs",
  }),
  requestTimeout: dflt(intIn(1, 600), 15, {
    flag: "--request-timeout",
    arg: "SECONDS",
    help: "per-request coordinator timeout",
  }),
  maxPromptChars: dflt(intIn(1, 10_000_000), 32_768, {
    flag: "--max-prompt-chars",
    arg: "N",
    help: "longest prompt accepted",
  }),
  maxTokens: dflt(intIn(1, 1_000_000), 4096, {
    flag: "--max-tokens",
    arg: "N",
    help: "largest max_tokens accepted",
  }),
  contextSize: plain(intIn(64, 1_048_576), {
    flag: "--context-size",
    arg: "N",
    help: "llama context size per sequence",
  }),
  metricsPort: plain(intIn(0, 65_535), {
    flag: "--metrics-port",
    arg: "PORT",
    help: "serve Prometheus metrics on this port (off by default)",
  }),
  metricsHost: dflt(text(), "127.0.0.1", {
    flag: "--metrics-host",
    arg: "HOST",
    help: "address for --metrics-port",
  }),
  alertWebhook: plain(
    z
      .string()
      .max(2048)
      .url()
      .refine((u) => /^https?:\/\//i.test(u), "must be an http:// or https:// URL"),
    {
      flag: "--alert-webhook",
      arg: "URL",
      help: "POST alerts as JSON with a Slack-compatible text field to this URL (a card drained or back, a crash loop, the state directory full, no jobs, earnings stalled, credentials refused)",
      secret: true,
    },
  ),
  alertNoJobMinutes: dflt(decimalIn(0.1, 10_080), 30, {
    flag: "--alert-no-job-minutes",
    arg: "MINUTES",
    help: "alert when no job was handed out for this long although polls are answered",
  }),
  alertEarningsStalledMinutes: dflt(decimalIn(0.1, 10_080), 60, {
    flag: "--alert-earnings-stalled-minutes",
    arg: "MINUTES",
    help: "alert when nothing was earned for this long although jobs complete, after results were accepted before",
  }),
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
