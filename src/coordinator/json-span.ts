// Find the raw text of one top-level member of a JSON object without parsing its value, so a
// coordinator-signed receipt reaches the verifier byte for byte (JSON.parse would turn 1.0
// into 1 and round integers beyond 2^53, breaking the signature).

class ScanError extends Error {}

function skipWs(text: string, i: number): number {
  let p = i;
  while (p < text.length) {
    const c = text.charCodeAt(p);
    if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) p++;
    else break;
  }
  return p;
}

/** Index just past the string that starts at `i` (which must be a quote). */
function skipString(text: string, i: number): number {
  if (text[i] !== '"') throw new ScanError(`expected string at ${i}`);
  let p = i + 1;
  while (p < text.length) {
    const ch = text[p];
    if (ch === "\\") p += 2;
    else if (ch === '"') return p + 1;
    else p++;
  }
  throw new ScanError("unterminated string");
}

/** Index just past the JSON value that starts at `i`. */
function skipValue(text: string, i: number): number {
  const ch = text[i];
  if (ch === '"') return skipString(text, i);
  if (ch === "{" || ch === "[") {
    const close = ch === "{" ? "}" : "]";
    let p = skipWs(text, i + 1);
    if (text[p] === close) return p + 1;
    for (;;) {
      if (ch === "{") {
        p = skipString(text, p);
        p = skipWs(text, p);
        if (text[p] !== ":") throw new ScanError(`expected ':' at ${p}`);
        p = skipWs(text, p + 1);
      }
      p = skipWs(text, skipValue(text, p));
      if (text[p] === ",") p = skipWs(text, p + 1);
      else if (text[p] === close) return p + 1;
      else throw new ScanError(`expected ',' or '${close}' at ${p}`);
    }
  }
  const m = /^(?:-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)/.exec(text.slice(i, i + 400));
  if (!m) throw new ScanError(`unexpected token at ${i}`);
  return i + m[0].length;
}

/**
 * Walk the members of the top-level object of `text` in order, telling `visit` each name and where
 * its value's text lies. True when the object closes cleanly; false when the text is no object or
 * breaks off (truncated, malformed, or `visit` threw): the members visited before stand.
 */
function eachMember(text: string, visit: (name: unknown, start: number, end: number) => void): boolean {
  try {
    let p = skipWs(text, 0);
    if (text[p] !== "{") return false;
    p = skipWs(text, p + 1);
    if (text[p] === "}") return true;
    for (;;) {
      const keyEnd = skipString(text, p);
      const name: unknown = JSON.parse(text.slice(p, keyEnd));
      p = skipWs(text, keyEnd);
      if (text[p] !== ":") return false;
      p = skipWs(text, p + 1);
      const valueEnd = skipValue(text, p);
      visit(name, p, valueEnd);
      p = skipWs(text, valueEnd);
      if (text[p] === ",") p = skipWs(text, p + 1);
      else return text[p] === "}";
    }
  } catch {
    return false;
  }
}

/**
 * The raw text of the value of `key` in the top-level object of `text`, or null when the
 * key is absent, its value is JSON null, or the text is not a JSON object. The last occurrence
 * wins, as with JSON.parse.
 */
export function rawMemberText(text: string, key: string): string | null {
  let found: string | null = null;
  const whole = eachMember(text, (name, start, end) => {
    if (name === key) found = text.slice(start, end);
  });
  return !whole || found === "null" ? null : found;
}

/**
 * The string value of `key` in the top-level object of `text`, read as far as the text goes: a
 * truncated or malformed answer still yields the members before the break. Used to name a job
 * whose answer cannot be used (too large, unparsable) so it can be failed back.
 */
export function topLevelStringMember(text: string, key: string): string | null {
  let found: string | null = null;
  eachMember(text, (name, start, end) => {
    if (name === key && text[start] === '"') found = JSON.parse(text.slice(start, end)) as string;
  });
  return found;
}
