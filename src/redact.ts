// One helper for credentials inside URLs (https://user:pass@host): every place that prints or
// logs a URL an operator typed goes through it, so `user:pass` never reaches a terminal or a log.

// scheme://userinfo@ — userinfo runs to the last "@" before the path, query or fragment.
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#]*@/gi;

/** Replace the userinfo of every URL in `text` with `***`. */
export function redactUrlCredentials(text: string): string {
  return text.replace(URL_USERINFO, "$1***@");
}

/**
 * The secret part of a URL's userinfo (raw and decoded), for registering as log secrets: the
 * password, or the user name when it stands alone (https://TOKEN@host). A user name beside a
 * password is not secret, and scrubbing a common word like "miner" would garble every log line.
 */
export function urlCredentials(url: string): string[] {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return [];
  }
  const out = new Set<string>();
  const secret = u.password || u.username;
  if (!secret) return [];
  for (const raw of u.password ? [u.password, `${u.username}:${u.password}`] : [u.username]) {
    out.add(raw);
    try {
      out.add(decodeURIComponent(raw));
    } catch {
      // A malformed escape: the raw form is already registered.
    }
  }
  return [...out];
}
