// One helper for credentials inside URLs (https://user:pass@host): every place that prints or
// logs a URL an operator typed goes through it, so `user:pass` never reaches a terminal or a log.

// scheme://userinfo@ — userinfo runs to the last "@" before the path, query or fragment.
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#]*@/gi;

/** Replace the userinfo of every URL in `text` with `***`. */
export function redactUrlCredentials(text: string): string {
  return text.replace(URL_USERINFO, "$1***@");
}

/** The userinfo parts of a URL (raw and decoded), for registering as log secrets. */
export function urlCredentials(url: string): string[] {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return [];
  }
  const out = new Set<string>();
  for (const part of [u.username, u.password]) {
    if (!part) continue;
    out.add(part);
    try {
      out.add(decodeURIComponent(part));
    } catch {
      // A malformed escape: the raw form is already registered.
    }
  }
  return [...out];
}
