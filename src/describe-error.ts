// One shape for errors in log lines: typed failures keep their kind/code, nothing else leaks.
import { BackendError } from "./backends/types.js";
import { CoordinatorError } from "./coordinator/errors.js";
import { redactUrlCredentials } from "./redact.js";

export function describeError(err: unknown): Record<string, unknown> {
  // Messages may quote a URL the operator typed: its user:pass never goes into a log line.
  const m = (text: string) => redactUrlCredentials(text);
  if (err instanceof CoordinatorError) return { kind: err.kind, status: err.status, message: m(err.message) };
  if (err instanceof BackendError) return { code: err.code, message: m(err.message) };
  if (err instanceof Error) return { name: err.name, message: m(err.message) };
  return { message: m(String(err)) };
}
