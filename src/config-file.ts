// The --config file (or AITBC_CONFIG): read and shaped without a schema library, so commands
// that need one value from it (the state directory) start fast; config.ts validates the rest.
import { readFileSync } from "node:fs";

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(
      `--config: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    // V8's message quotes the text around the error, and the file may hold a secret: keep only
    // the position.
    const at = /position (\d+)/.exec((err as Error).message)?.[1];
    throw new ConfigError(
      `--config: ${path} is not valid JSON${at ? ` (syntax error at character ${at})` : ""}; fix the file`,
    );
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new ConfigError(`--config: ${path} must hold a JSON object`);
  }
  // Accept both camelCase keys and the flag spellings ("model-map").
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(parsed)) {
    const camel = k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    out[camel] = v;
  }
  return out;
}
