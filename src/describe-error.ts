// One shape for errors in log lines: typed failures keep their kind/code, nothing else leaks.
import { BackendError } from "./backends/types.js";
import { CoordinatorError } from "./coordinator/errors.js";

export function describeError(err: unknown): Record<string, unknown> {
  if (err instanceof CoordinatorError) return { kind: err.kind, status: err.status, message: err.message };
  if (err instanceof BackendError) return { code: err.code, message: err.message };
  if (err instanceof Error) return { name: err.name, message: err.message };
  return { message: String(err) };
}
