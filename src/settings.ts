// Every `run` setting as the operator meets it: flag, argument name and help, one entry each. The
// environment twin is derived (envName). Plain data, no schema library: the CLI builds `run --help`
// and the deployment tests read the names from here; config.ts validates the values.
import type { RunConfigKey } from "./config.js";

/** systemd credential names (LoadCredential=NAME:PATH) read from $CREDENTIALS_DIRECTORY. */
export const API_KEY_CREDENTIAL = "aitbc-api-key";
export const BEARER_TOKEN_CREDENTIAL = "aitbc-bearer-token";

/** One row per setting: its flag, its environment variable and its help text. */
export interface SettingSpec {
  key: RunConfigKey;
  flag: string;
  arg?: string;
  help: string;
  secret?: boolean;
}

export const SETTINGS: SettingSpec[] = [
  { key: "coordinator", flag: "--coordinator", arg: "URL", help: "coordinator base URL (required)" },
  {
    key: "apiKey",
    flag: "--api-key",
    arg: "KEY",
    help: "miner API key, sent as X-Api-Key (visible in ps to every local user: prefer --api-key-file)",
    secret: true,
  },
  {
    key: "apiKeyFile",
    flag: "--api-key-file",
    arg: "FILE",
    help: `file holding the API key (not world-readable; default: $CREDENTIALS_DIRECTORY/${API_KEY_CREDENTIAL} under systemd)`,
  },
  {
    key: "bearerToken",
    flag: "--bearer-token",
    arg: "TOKEN",
    help: "send Authorization: Bearer TOKEN instead of an API key (visible in ps: prefer --bearer-token-file)",
    secret: true,
  },
  {
    key: "bearerTokenFile",
    flag: "--bearer-token-file",
    arg: "FILE",
    help: `file holding the bearer token (not world-readable; default: $CREDENTIALS_DIRECTORY/${BEARER_TOKEN_CREDENTIAL})`,
  },
  { key: "minerId", flag: "--miner-id", arg: "ID", help: "miner id (default: <hostname>-miner)" },
  { key: "protocol", flag: "--protocol", arg: "aitbc|claim", help: "coordinator dialect (default: aitbc)" },
  { key: "backend", flag: "--backend", arg: "llama|ollama", help: "inference backend (default: llama)" },
  { key: "models", flag: "--models", arg: "DIR", help: "models directory: NAME.gguf serves model NAME" },
  { key: "modelMap", flag: "--model-map", arg: "FILE", help: "JSON file mapping model names to GGUF paths" },
  {
    key: "ollamaUrl",
    flag: "--ollama-url",
    arg: "URL",
    help: "Ollama server for --backend ollama (default: http://127.0.0.1:11434)",
  },
  {
    key: "ollamaFallback",
    flag: "--ollama-fallback",
    help: "serve models only Ollama has through Ollama (llama backend first)",
  },
  { key: "concurrency", flag: "--concurrency", arg: "N", help: "jobs in flight at once (default: 1)" },
  { key: "threads", flag: "--threads", arg: "N", help: "CPU threads for inference (default: all cores)" },
  {
    key: "gpu",
    flag: "--gpu",
    arg: "auto|cpu",
    help: "use CUDA when available, or force CPU (default: auto)",
  },
  {
    key: "allowCpuInference",
    flag: "--allow-cpu-inference",
    help: "mine on the CPU (advertising no GPU) when NVML sees GPUs but no GPU runtime starts; without it run exits 69",
  },
  {
    key: "stateDir",
    flag: "--state-dir",
    arg: "DIR",
    help: "keys, outbox, journal, receipts (default: $XDG_STATE_HOME/aitbc-native-miner)",
  },
  { key: "logLevel", flag: "--log-level", arg: "LEVEL", help: "fatal|error|warn|info|debug|trace|silent" },
  { key: "region", flag: "--region", arg: "REGION", help: "region advertised to the coordinator" },
  {
    key: "price",
    flag: "--price",
    arg: "PRICE",
    help: "price per GPU-second (the unit upstream bills): advertised as capabilities.price (what max_price constraints match) and sent with each result as metrics.unit_price (default: 0.02, upstream's own default)",
  },
  {
    key: "coordinatorKey",
    flag: "--coordinator-key",
    arg: "HEX|B64URL",
    help: "coordinator public key: verify its receipts",
  },
  {
    key: "allowInsecureHttp",
    flag: "--allow-insecure-http",
    help: "allow plain http:// to a non-loopback coordinator",
  },
  { key: "unloadAfterJob", flag: "--unload-after-job", help: "free GPU memory after every job" },
  { key: "nvmlLibrary", flag: "--nvml-library", arg: "PATH", help: "path of libnvidia-ml.so.1" },
  { key: "heartbeatInterval", flag: "--heartbeat-interval", arg: "SECONDS", help: "default: 15" },
  {
    key: "pollsPerMinute",
    flag: "--polls-per-minute",
    arg: "N",
    help: "polls per minute the coordinator allows this host's IP, shared by all its workers; ~90% is spent, 70% of that evenly when idle, the rest right after jobs (default: 100, the reference limit)",
  },
  {
    key: "longPoll",
    flag: "--long-poll",
    arg: "SECONDS",
    help: "max_wait_seconds asked of the coordinator; one that holds polls answers as a job arrives (default: 20; 0 = never)",
  },
  {
    key: "gpus",
    flag: "--gpus",
    arg: "all|none|LIST",
    help: "GPUs to mine on, one worker process each: all (default), none (CPU), or indexes/UUIDs like 0,2",
  },
  {
    key: "gpuGroups",
    flag: "--gpu-groups",
    arg: "GROUPS",
    help: 'cards that serve as one worker, layers split across them, e.g. "0,1;2,3"',
  },
  {
    key: "minerIdTemplate",
    flag: "--miner-id-template",
    arg: "TEMPLATE",
    help: "each worker's miner id on a multi-GPU host: {id} the miner id, {n} its GPU indexes, {uuid} its first GPU's UUID (default: {id}-gpu{n})",
  },
  {
    key: "preload",
    flag: "--preload",
    arg: "NAMES",
    help: "models loaded before the first job: all (largest first, as many as fit), none, or a comma list in order (default: all)",
  },
  { key: "jobTimeout", flag: "--job-timeout", arg: "SECONDS", help: "hard deadline per job (default: 300)" },
  {
    key: "gracePeriod",
    flag: "--grace-period",
    arg: "SECONDS",
    help: "on SIGTERM, time to finish in-flight jobs (default: 30)",
  },
  {
    key: "requestTimeout",
    flag: "--request-timeout",
    arg: "SECONDS",
    help: "per-request coordinator timeout (default: 15)",
  },
  {
    key: "maxPromptChars",
    flag: "--max-prompt-chars",
    arg: "N",
    help: "longest prompt accepted (default: 32768)",
  },
  { key: "maxTokens", flag: "--max-tokens", arg: "N", help: "largest max_tokens accepted (default: 4096)" },
  { key: "contextSize", flag: "--context-size", arg: "N", help: "llama context size per sequence" },
  {
    key: "metricsPort",
    flag: "--metrics-port",
    arg: "PORT",
    help: "serve Prometheus metrics on this port (off by default)",
  },
  {
    key: "metricsHost",
    flag: "--metrics-host",
    arg: "HOST",
    help: "address for --metrics-port (default: 127.0.0.1)",
  },
  {
    key: "alertWebhook",
    flag: "--alert-webhook",
    arg: "URL",
    help: "POST alerts as JSON with a Slack-compatible text field to this URL (a card drained or back, a crash loop, the state directory full, no jobs, earnings stalled, credentials refused)",
    secret: true,
  },
  {
    key: "alertNoJobMinutes",
    flag: "--alert-no-job-minutes",
    arg: "MINUTES",
    help: "alert when no job was handed out for this long although polls are answered (default: 30)",
  },
  {
    key: "alertEarningsStalledMinutes",
    flag: "--alert-earnings-stalled-minutes",
    arg: "MINUTES",
    help: "alert when nothing was earned for this long although jobs complete, after results were accepted before (default: 60)",
  },
];

/** `--model-map` → `AITBC_MODEL_MAP` */
export function envName(spec: SettingSpec): string {
  return `AITBC_${spec.flag.replace(/^--/, "").replace(/-/g, "_").toUpperCase()}`;
}
