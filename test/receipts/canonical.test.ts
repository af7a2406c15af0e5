import { describe, expect, it } from "vitest";
import {
  canonicalJson,
  JsonFloat,
  parseJsonLossless,
  pyFloatRepr,
  stringifyJson,
} from "../../src/receipts/index.js";

const canon = (text: string) => canonicalJson(parseJsonLossless(text));

describe("canonicalJson", () => {
  it.each([
    [1e-5, "1e-05"],
    [1e16, "1e+16"],
    [0.1, "0.1"],
    [123456789.125, "123456789.125"],
    [2.5e-300, "2.5e-300"],
    [0.0001, "0.0001"],
    [1.5, "1.5"],
    [9999999999999998, "9999999999999998.0"],
    [5e-324, "5e-324"],
    [1.7976931348623157e308, "1.7976931348623157e+308"],
    [-0, "-0.0"],
    [1, "1.0"],
  ])("prints the float %d as Python's repr: %s", (v, want) => {
    expect(pyFloatRepr(v)).toBe(want);
  });

  it("keeps what the text says: 1.0 stays a float, big integers and -0.0 stay exact", () => {
    expect(canon("[1.0, 1, -0.0, -0, 1E2, 12345678901234567890, -9007199254740993]")).toBe(
      "[1.0,1,-0.0,0,100.0,12345678901234567890,-9007199254740993]",
    );
    const v = parseJsonLossless("[1.0, 12345678901234567890]") as unknown[];
    expect(v[0]).toBeInstanceOf(JsonFloat);
    expect(v[1]).toBe(12345678901234567890n);
  });

  it("prints plain JS numbers: integers as ints (in full), others as Python floats", () => {
    expect(canonicalJson({ a: 3, b: 0.5, c: 1e21, d: -0, e: 2n ** 70n })).toBe(
      '{"a":3,"b":0.5,"c":1000000000000000000000,"d":0,"e":1180591620717411303424}',
    );
  });

  it("sorts keys by code point (astral after U+FFFF) and escapes like ensure_ascii", () => {
    expect(canon('{"\uffff":1,"\ud83d\ude80":2,"\u00e9":3,"e":4,"E":5}')).toBe(
      '{"E":5,"e":4,"\\u00e9":3,"\\uffff":1,"\\ud83d\\ude80":2}',
    );
    expect(canonicalJson('\u0000\u001f\u007f\b\f\n\r\t"\\/\u2028')).toBe(
      '"\\u0000\\u001f\\u007f\\b\\f\\n\\r\\t\\"\\\\/\\u2028"',
    );
    expect(canon('"\\ud800x"')).toBe('"\\ud800x"');
  });

  it("drops nulls from objects and lists, recursively, but keeps empty containers", () => {
    expect(canon('{"a":null,"b":[null,{"c":null},[null]],"d":{}}')).toBe('{"b":[{},[]],"d":{}}');
    expect(canonicalJson({ a: undefined, b: [undefined, 1] })).toBe('{"b":[1]}');
  });

  it("keeps the last of duplicate keys, as Python does, and treats __proto__ as a plain key", () => {
    expect(canon('{"a":1,"b":2,"a":3}')).toBe('{"a":3,"b":2}');
    const v = parseJsonLossless('{"__proto__":{"x":1}}') as Record<string, unknown>;
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
    expect(canonicalJson(v)).toBe('{"__proto__":{"x":1}}');
  });

  it("refuses NaN, Infinity and values that are not JSON", () => {
    for (const bad of [
      Number.NaN,
      Number.POSITIVE_INFINITY,
      { a: -Infinity },
      () => 1,
      new Date(0),
      Symbol("s"),
    ]) {
      expect(() => canonicalJson(bad)).toThrow();
    }
    // Parsed text may carry them (Python reads and prints them); our own values may not.
    expect(canon("1e400")).toBe("Infinity");
    expect(canon("[NaN,-Infinity]")).toBe("[NaN,-Infinity]");
    expect(canon('{"a":1e400,"a":2}')).toBe('{"a":2}');
    expect(canon("-1e-400")).toBe("-0.0");
  });

  it("limits nesting, size and integer digits, and refuses cycles", () => {
    const deep = (n: number) => "[".repeat(n) + "]".repeat(n);
    expect(canon(deep(128))).toBe(deep(128));
    expect(() => parseJsonLossless(deep(129))).toThrow(/nesting deeper than 128/);
    expect(() => parseJsonLossless(" ".repeat(100), { maxLength: 99 })).toThrow(/longer than 99/);
    expect(() => parseJsonLossless("1".repeat(4301), { maxLength: 10_000 })).toThrow(/4300 digits/);
    const cyc: Record<string, unknown> = {};
    cyc["self"] = cyc;
    expect(() => canonicalJson(cyc)).toThrow(/cycle/);
  });

  it.each([
    "",
    "{",
    "[1,]",
    '{"a" 1}',
    "01",
    "+1",
    "1.",
    ".5",
    "1e",
    '"\\x"',
    '"\\u12"',
    '"a\nb"',
    "nul",
    "tru",
    "NaNa",
    "-Infinit",
    "{} {}",
    "'a'",
    "[1 2]",
  ])("refuses malformed JSON %j with a position", (text) => {
    expect(() => parseJsonLossless(text)).toThrow(/position \d+/);
  });

  it("stringifyJson keeps order, nulls and exact numbers (the receipts log format)", () => {
    const v = parseJsonLossless('{"z":1.0,"a":null,"n":12345678901234567890,"s":"\u00e9"}');
    expect(stringifyJson(v)).toBe('{"z":1.0,"a":null,"n":12345678901234567890,"s":"\\u00e9"}');
    expect(parseJsonLossless(stringifyJson(v))).toEqual(v);
  });
});
