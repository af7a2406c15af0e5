// A real logger (createLogger: redaction, one JSON event per line) whose lines a test can read.
import { Writable } from "node:stream";
import { createLogger, type Logger } from "../../src/log.js";

export function captureLog(level: "debug" | "info" | "warn" = "info"): {
  log: Logger;
  /** Every line logged so far, parsed. */
  lines(): Record<string, unknown>[];
  /** The lines of one event. */
  events(name: string): Record<string, unknown>[];
} {
  const raw: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer | string, _enc, done) {
      raw.push(
        ...String(chunk)
          .split("\n")
          .filter((l) => l.length > 0),
      );
      done();
    },
  });
  const log = createLogger({ level, destination });
  const lines = () => raw.map((l) => JSON.parse(l) as Record<string, unknown>);
  return { log, lines, events: (name) => lines().filter((l) => l["event"] === name) };
}
