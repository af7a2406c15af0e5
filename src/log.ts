// Structured logs (pino), one event per line on stderr. Secrets never reach them: known secret
// paths are censored, and every registered secret string is scrubbed from messages.
import { type LevelWithSilent, type Logger, pino } from "pino";
import { scrubSecrets } from "./secrets.js";

export { registerSecret, scrubSecrets } from "./secrets.js";
export type { Logger };

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
      dest.write(scrubSecrets(line));
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
