// Property test: our canonical text equals python3's json.dumps(drop_none(json.loads(text)),
// separators=(",", ":"), sort_keys=True) for thousands of random JSON texts, in one python run.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { canonicalJson, parseJsonLossless } from "../../src/receipts/index.js";
import { repoRoot } from "../support/receipts.js";

type Node =
  | { t: "lit"; text: string }
  | { t: "str"; value: string }
  | { t: "arr"; items: Node[]; spaced: boolean }
  | { t: "obj"; entries: [string, Node][]; spaced: boolean };

const special = fc.constantFrom(
  "\u007f",
  "\u0000",
  "\u001f",
  "\n",
  "\t",
  '"',
  "\\",
  "/",
  "\u00e9",
  "\u00ff",
  "\u0080",
  "\u2028",
  "\uffff",
  "\ud800",
  "\udfff",
  "\ud83d\ude80",
  "\u{10ffff}",
  "\u{1d11e}",
);
const char = fc.oneof(
  fc.string({ unit: "binary", minLength: 1, maxLength: 1 }),
  special,
  fc.constantFrom("a", "B", "_", "0"),
);
const str = fc.array(char, { maxLength: 6 }).map((a) => a.join(""));
// A small pool makes duplicate keys (Python keeps the last) and shared prefixes common.
const key = fc.oneof(str, fc.constantFrom("a", "b", "\u00e9", "\ud83d\ude80", "\uffff", "aa", "A"));

const dbl = fc.double({ noNaN: true, noDefaultInfinity: true });
const intLexeme = fc.oneof(
  fc.integer().map(String),
  fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }).map(String),
  fc.constantFrom(
    "0",
    "-0",
    "9007199254740992",
    "9007199254740993",
    "-9007199254740993",
    "12345678901234567890",
  ),
);
const floatLexeme = fc.oneof(
  dbl.map((d) => {
    const s = String(d);
    return /[.e]/.test(s) ? s : `${s}.0`;
  }),
  dbl.map((d) => d.toExponential()),
  fc
    .tuple(
      fc.integer({ min: -99999, max: 99999 }),
      fc.nat(9999),
      fc.constantFrom("e", "E", "e+", "E-", "e-"),
      fc.nat(320),
    )
    .map(([a, b, e, x]) => `${a}.${b}${e}${x}`),
  fc.constantFrom(
    "-0.0",
    "1.0",
    "0.1",
    "1e-05",
    "1E+16",
    "123456789.125",
    "2.5e-300",
    "5e-324",
    "1e-400",
    "-1e-400",
  ),
);
const leaf: fc.Arbitrary<Node> = fc.oneof(
  fc.constantFrom<Node>({ t: "lit", text: "null" }, { t: "lit", text: "true" }, { t: "lit", text: "false" }),
  str.map((value): Node => ({ t: "str", value })),
  fc.oneof(intLexeme, floatLexeme).map((text): Node => ({ t: "lit", text })),
);
const tree = fc.letrec<{ node: Node }>((tie) => ({
  node: fc.oneof(
    { maxDepth: 4, depthIdentifier: "json" },
    leaf,
    fc
      .tuple(fc.array(tie("node"), { maxLength: 5 }), fc.boolean())
      .map(([items, spaced]): Node => ({ t: "arr", items, spaced })),
    fc
      .tuple(fc.array(fc.tuple(key, tie("node")), { maxLength: 5 }), fc.boolean())
      .map(([entries, spaced]): Node => ({ t: "obj", entries, spaced })),
  ),
})).node;

function render(n: Node): string {
  switch (n.t) {
    case "lit":
      return n.text;
    case "str":
      return JSON.stringify(n.value);
    case "arr":
      return `[${n.items.map(render).join(n.spaced ? ", " : ",")}]`;
    case "obj":
      return `{${n.entries.map(([k, v]) => `${JSON.stringify(k)}${n.spaced ? ": " : ":"}${render(v)}`).join(n.spaced ? ", " : ",")}}`;
  }
}

const work = mkdtempSync(join(tmpdir(), "receipts-py-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function pythonCanonical(texts: string[]): (string | null)[] {
  const input = join(work, "cases.json");
  const output = join(work, "out.json");
  writeFileSync(input, JSON.stringify(texts), "utf8");
  execFileSync("python3", [join(repoRoot, "test", "receipts", "python-dumps.py"), input, output], {
    stdio: "pipe",
    timeout: 60_000,
  });
  return JSON.parse(readFileSync(output, "utf8")) as (string | null)[];
}

function ours(text: string): string | null {
  try {
    return canonicalJson(parseJsonLossless(text));
  } catch {
    return null;
  }
}

describe("canonical JSON equals python3's json.dumps", () => {
  it("for thousands of random JSON texts and plain JS numbers (one python3 process)", () => {
    const seed = Date.now() ^ (Math.random() * 0x7fffffff);
    const texts = fc.sample(tree.map(render), { numRuns: 4000, seed });
    // Plain JS numbers (our own receipts): integral → Python int, else Python float.
    const numbers = fc.sample(fc.oneof(dbl, fc.integer(), fc.double({ min: -1e6, max: 1e6, noNaN: true })), {
      numRuns: 1000,
      seed: seed + 1,
    });
    const numberTexts = numbers.map((d) => (Number.isInteger(d) ? BigInt(d).toString() : String(d)));
    const expected = pythonCanonical([...texts, ...numberTexts]);

    const mismatches: string[] = [];
    texts.forEach((text, i) => {
      const got = ours(text);
      if (got !== expected[i])
        mismatches.push(`text ${JSON.stringify(text)}: ours ${got} python ${expected[i]}`);
    });
    numbers.forEach((d, i) => {
      const want = expected[texts.length + i];
      const got = canonicalJson(d);
      if (got !== want) mismatches.push(`number ${d}: ours ${got} python ${want}`);
    });
    expect(mismatches.slice(0, 10), `seed ${seed}`).toEqual([]);
    // Refusals (floats that overflow to inf) must stay rare, or the comparison says little.
    expect(expected.filter((e) => e === null).length).toBeLessThan(texts.length / 5);
  });

  it("prints what Python reads as Infinity/NaN as json.dumps does, and refuses texts Python refuses", () => {
    const special = ["1e400", "[-1e400]", "NaN", '{"a": Infinity}', "[-Infinity, 1.5]"];
    expect(pythonCanonical(special)).toEqual(special.map((t) => canonicalJson(parseJsonLossless(t))));
    const texts = ["01", "[1,]", '"\\x"', '"a\u0001"', "1 2"];
    expect(pythonCanonical(texts)).toEqual(texts.map(() => null));
    for (const t of texts) expect(() => canonicalJson(parseJsonLossless(t)), t).toThrow();
  });
});
