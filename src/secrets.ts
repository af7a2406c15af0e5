// The secrets this process knows (API key, private key hex...): registered once, scrubbed from
// every log line and error text. Its own module so that commands which only need the registry
// (keys, verify) do not load the logger.
const secrets = new Set<string>();

/** Register a secret so that no log line can ever contain it. */
export function registerSecret(value: string | undefined | null): void {
  if (value && value.length >= 4) secrets.add(value);
}

export function scrubSecrets(text: string): string {
  if (secrets.size === 0) return text;
  let out = text;
  for (const s of secrets) if (out.includes(s)) out = out.split(s).join("[REDACTED]");
  return out;
}
