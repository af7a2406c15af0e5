// JSON that round-trips with Python: a lossless parser (number lexemes keep their meaning) and a
// serializer that prints exactly what `json.dumps(drop_none(v), separators=(",", ":"),
// sort_keys=True)` prints. Receipts are signed over that text, so every byte matters.

/**
 * A float whose value is integral (or -0.0): JS would print it as an int, Python as `1.0`.
 * Also a float lexeme that overflows (`1e400`), and NaN/Infinity literals: printed as json.dumps does.
 */
export class JsonFloat {
  constructor(readonly value: number) {}
  valueOf(): number {
    return this.value;
  }
  toString(): string {
    return Number.isFinite(this.value) ? pyFloatRepr(this.value) : String(this.value);
  }
  toJSON(): number {
    return this.value;
  }
}

/**
 * What the lossless parser yields. Integers within ±(2^53-1) are numbers, larger ones bigints;
 * floats are numbers, except integral ones (`1.0`, `1e+16`, `-0.0`), which are JsonFloat.
 */
export type JsonValue = null | boolean | string | number | bigint | JsonFloat | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

export class JsonError extends Error {
  override readonly name: string = "JsonError";
}

/** Text that is not JSON, or JSON that Python would read differently (NaN, huge numbers). */
export class JsonParseError extends JsonError {
  override readonly name = "JsonParseError";
  constructor(
    message: string,
    readonly position: number,
  ) {
    super(`${message} at position ${position}`);
  }
}

export interface JsonLimits {
  /** Longest text accepted, in UTF-16 units (default 1 MiB). */
  maxLength?: number;
  /** Deepest nesting of arrays/objects (default 128; Python's recursion limit is ~1000). */
  maxDepth?: number;
}

export const DEFAULT_MAX_LENGTH = 1024 * 1024;
export const DEFAULT_MAX_DEPTH = 128;
/** CPython refuses to read integers with more digits (sys.int_info.default_max_str_digits). */
const PY_MAX_INT_DIGITS = 4300;

const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?/y;

/** Parse JSON text keeping what JSON.parse loses: big integers, `1.0` vs `1`, `-0.0`. */
export function parseJsonLossless(text: string, limits: JsonLimits = {}): JsonValue {
  const maxLength = limits.maxLength ?? DEFAULT_MAX_LENGTH;
  const maxDepth = limits.maxDepth ?? DEFAULT_MAX_DEPTH;
  if (text.length > maxLength) {
    throw new JsonParseError(`JSON text longer than ${maxLength} characters`, maxLength);
  }
  let pos = 0;

  const fail = (msg: string, at = pos): never => {
    throw new JsonParseError(msg, at);
  };
  const skipWs = (): void => {
    for (;;) {
      const c = text.charCodeAt(pos);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) pos++;
      else return;
    }
  };

  const parseString = (): string => {
    // pos is at the opening quote
    pos++;
    let out = "";
    let runStart = pos;
    for (;;) {
      if (pos >= text.length) fail("unterminated string");
      const c = text.charCodeAt(pos);
      if (c === 0x22) {
        out += text.slice(runStart, pos);
        pos++;
        return out;
      }
      if (c < 0x20) fail("control character in string");
      if (c !== 0x5c) {
        pos++;
        continue;
      }
      out += text.slice(runStart, pos);
      const e = text[pos + 1];
      switch (e) {
        case '"':
          out += '"';
          break;
        case "\\":
          out += "\\";
          break;
        case "/":
          out += "/";
          break;
        case "b":
          out += "\b";
          break;
        case "f":
          out += "\f";
          break;
        case "n":
          out += "\n";
          break;
        case "r":
          out += "\r";
          break;
        case "t":
          out += "\t";
          break;
        case "u": {
          const hex = text.slice(pos + 2, pos + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail("bad \\u escape");
          out += String.fromCharCode(Number.parseInt(hex, 16));
          pos += 4;
          break;
        }
        default:
          fail("bad escape");
      }
      pos += 2;
      runStart = pos;
    }
  };

  const parseNumber = (): JsonValue => {
    NUMBER_RE.lastIndex = pos;
    const m = NUMBER_RE.exec(text);
    if (!m) return fail("unexpected character");
    const lexeme = m[0];
    const start = pos;
    pos += lexeme.length;
    if (m[1] === undefined && m[2] === undefined) {
      const digits = lexeme.startsWith("-") ? lexeme.length - 1 : lexeme.length;
      if (digits > PY_MAX_INT_DIGITS) fail(`integer with more than ${PY_MAX_INT_DIGITS} digits`, start);
      const big = BigInt(lexeme);
      // -0 as an integer is 0 in Python
      return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER)
        ? Number(big)
        : big;
    }
    const v = Number(lexeme);
    // Overflow reads as ±Infinity, as in Python (and prints back as Infinity, as json.dumps does).
    return Number.isInteger(v) || !Number.isFinite(v) ? new JsonFloat(v) : v;
  };

  const parseValue = (depth: number): JsonValue => {
    skipWs();
    const c = text[pos];
    switch (c) {
      case "{": {
        if (depth >= maxDepth) fail(`nesting deeper than ${maxDepth}`);
        pos++;
        const obj: JsonObject = {};
        skipWs();
        if (text[pos] === "}") {
          pos++;
          return obj;
        }
        for (;;) {
          skipWs();
          if (text[pos] !== '"') fail("expected a string key");
          const key = parseString();
          skipWs();
          if (text[pos] !== ":") fail("expected ':'");
          pos++;
          const value = parseValue(depth + 1);
          // defineProperty: a "__proto__" key stays an own key; a repeated key keeps the last value (as Python).
          Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
          skipWs();
          if (text[pos] === ",") {
            pos++;
            continue;
          }
          if (text[pos] === "}") {
            pos++;
            return obj;
          }
          fail("expected ',' or '}'");
        }
      }
      case "[": {
        if (depth >= maxDepth) fail(`nesting deeper than ${maxDepth}`);
        pos++;
        const arr: JsonValue[] = [];
        skipWs();
        if (text[pos] === "]") {
          pos++;
          return arr;
        }
        for (;;) {
          arr.push(parseValue(depth + 1));
          skipWs();
          if (text[pos] === ",") {
            pos++;
            continue;
          }
          if (text[pos] === "]") {
            pos++;
            return arr;
          }
          fail("expected ',' or ']'");
        }
      }
      case '"':
        return parseString();
      case "t":
        return literal("true", true);
      case "f":
        return literal("false", false);
      case "n":
        return literal("null", null);
      case undefined:
        return fail("unexpected end of JSON text");
      default:
        // Python's json.loads reads these non-standard literals, and json.dumps (allow_nan is on by
        // default in the reference) prints them: a receipt signed over them must still verify.
        if (text.startsWith("NaN", pos)) return literal("NaN", new JsonFloat(Number.NaN));
        if (text.startsWith("Infinity", pos))
          return literal("Infinity", new JsonFloat(Number.POSITIVE_INFINITY));
        if (text.startsWith("-Infinity", pos))
          return literal("-Infinity", new JsonFloat(Number.NEGATIVE_INFINITY));
        if (c === "-" || (c >= "0" && c <= "9")) return parseNumber();
        return fail("unexpected character");
    }
  };

  const literal = (word: string, value: JsonValue): JsonValue => {
    if (!text.startsWith(word, pos)) fail("unexpected character");
    pos += word.length;
    return value;
  };

  const value = parseValue(0);
  skipWs();
  if (pos !== text.length) fail("extra data after the JSON value");
  return value;
}

// ------------------------------------------------------------------------------------ output

/** Python's repr() of a float: shortest round-trip digits, `1e-05`, `1e+16`, `1.0`, `-0.0`. */
export function pyFloatRepr(v: number): string {
  if (!Number.isFinite(v)) throw new JsonError(`${v} is not allowed in JSON`);
  if (v === 0) return Object.is(v, -0) ? "-0.0" : "0.0";
  const sign = v < 0 ? "-" : "";
  // toExponential() with no argument gives the shortest digits that round-trip, as Python's repr.
  const [mant = "", expText = "0"] = Math.abs(v).toExponential().split("e");
  const digits = mant.replace(".", "");
  const exp = Number(expText);
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    const e = Math.abs(exp).toString().padStart(2, "0");
    return `${sign}${m}e${exp < 0 ? "-" : "+"}${e}`;
  }
  if (exp < 0) return `${sign}0.${"0".repeat(-exp - 1)}${digits}`;
  if (digits.length <= exp + 1) return `${sign}${digits}${"0".repeat(exp + 1 - digits.length)}.0`;
  return `${sign}${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
}

const PLAIN_ASCII = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;
const SHORT_ESCAPES: Record<number, string> = {
  34: '\\"',
  92: "\\\\",
  10: "\\n",
  13: "\\r",
  9: "\\t",
  8: "\\b",
  12: "\\f",
};

/** A JSON string literal as Python's ensure_ascii prints it (UTF-16 units, so astral → pairs). */
export function pyQuote(s: string): string {
  if (PLAIN_ASCII.test(s)) return `"${s}"`;
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const short = SHORT_ESCAPES[c];
    if (short !== undefined) out += short;
    else if (c < 0x20 || c >= 0x7f) out += `\\u${c.toString(16).padStart(4, "0")}`;
    else out += s[i];
  }
  return `${out}"`;
}

/** Order of Python's sorted() on str: by code point, so astral characters sort after U+FFFF. */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n) {
    const ca = a.codePointAt(i)!;
    const cb = b.codePointAt(i)!;
    if (ca !== cb) return ca < cb ? -1 : 1;
    i += ca > 0xffff ? 2 : 1;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

function formatNumber(v: number): string {
  if (!Number.isFinite(v)) throw new JsonError(`${v} is not allowed in JSON (Python would print ${v})`);
  // A plain JS number that is integral is an int (full digits, never an exponent); else a float.
  if (Number.isInteger(v)) return Object.is(v, -0) ? "0" : BigInt(v).toString();
  return pyFloatRepr(v);
}

function isPlainObject(v: object): v is Record<string, unknown> {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

interface SerializeOptions {
  sortKeys: boolean;
  dropNone: boolean;
  maxDepth: number;
}

function serialize(value: unknown, o: SerializeOptions, depth: number): string {
  if (value === null || value === undefined) return "null";
  switch (typeof value) {
    case "string":
      return pyQuote(value);
    case "boolean":
      return value ? "true" : "false";
    case "number":
      return formatNumber(value);
    case "bigint":
      return value.toString();
    case "object":
      break;
    default:
      throw new JsonError(`a ${typeof value} is not a JSON value`);
  }
  if (value instanceof JsonFloat) {
    // Only parsed text carries these (our own receipts never do): print them as json.dumps does.
    if (Number.isNaN(value.value)) return "NaN";
    if (!Number.isFinite(value.value)) return value.value > 0 ? "Infinity" : "-Infinity";
    return pyFloatRepr(value.value);
  }
  if (depth >= o.maxDepth) throw new JsonError(`nesting deeper than ${o.maxDepth} (or a cycle)`);
  if (Array.isArray(value)) {
    const parts: string[] = [];
    for (const item of value as unknown[]) {
      if (o.dropNone && (item === null || item === undefined)) continue;
      parts.push(serialize(item, o, depth + 1));
    }
    return `[${parts.join(",")}]`;
  }
  if (!isPlainObject(value)) {
    throw new JsonError(`a ${value.constructor?.name ?? "non-plain object"} is not a JSON value`);
  }
  const keys = Object.keys(value);
  if (o.sortKeys) keys.sort(compareCodePoints);
  const parts: string[] = [];
  for (const k of keys) {
    const item = value[k];
    // undefined is never JSON (JSON.stringify omits it); null goes only under drop_none
    if (item === undefined || (o.dropNone && item === null)) continue;
    parts.push(`${pyQuote(k)}:${serialize(item, o, depth + 1)}`);
  }
  return `{${parts.join(",")}}`;
}

/**
 * The signed text: `json.dumps(drop_none(value), separators=(",", ":"), sort_keys=True)`.
 * Accepts parsed JsonValues and plain JS data; throws JsonError on NaN/Infinity, functions,
 * class instances, or nesting deeper than maxDepth.
 */
export function canonicalJson(value: unknown, maxDepth = DEFAULT_MAX_DEPTH): string {
  return serialize(value, { sortKeys: true, dropNone: true, maxDepth }, 0);
}

/** Compact, ASCII-only JSON that keeps key order and nulls, and keeps big ints and `1.0` exact. */
export function stringifyJson(value: unknown, maxDepth = DEFAULT_MAX_DEPTH): string {
  return serialize(value, { sortKeys: false, dropNone: false, maxDepth }, 0);
}
