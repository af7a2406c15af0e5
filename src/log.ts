// Structured logs (pino), one event per line on stderr. Secrets never reach them: known secret
// paths are censored, and every registered secret string is scrubbed from messages.
import { type LevelWithSilent, type Logger, pino } from "pino";

export type { Logger };

const secrets = new Set<string>();

/** Register a secret (API key, private key hex...) so that no log line can ever contain it. */
export function registerSecret(value: string | undefined | null): void {
  if (value && value.length >= 4) secrets.add(value);
}

export function scrubSecrets(text: string): string {
  let out = text;
  for (const s of secrets) if (out.includes(s)) out = out.split(s).join("[REDACTED]");
  return out;
}

const REDACT_PATHS = [
  "apiKey",
  "*.apiKey",
  "api_key",
  "*.api_key",
  "privateKey",
  "*.privateKey",
  "authorization",
  "*.authorization",
  "headers['x-api-key']",
  "*.headers['x-api-key']",
  "token",
  "*.token",
  "session_token",
  "*.session_token",
];

export interface LogOptions {
  level?: LevelWithSilent;
  /** Where lines go (default: stderr, so stdout stays for command output). */
  destination?: NodeJS.WritableStream;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const dest = opts.destination ?? process.stderr;
  const stream = {
    write(line: string): void {
      dest.write(secrets.size > 0 ? scrubSecrets(line) : line);
    },
  };
  return pino(
    {
      level: opts.level ?? "info",
      base: { pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: "[REDACTED]" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    stream,
  );
}

/** A logger that drops everything (library use, tests that do not look at logs). */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
