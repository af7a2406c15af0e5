// The lossless member scanner that carries coordinator receipts byte for byte.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { rawMemberText, topLevelStringMember } from "../../src/coordinator/json-span.js";

describe("rawMemberText", () => {
  it("returns the exact text of a top-level member, last one wins", () => {
    expect(rawMemberText('{"a":1,"receipt":{"x":1.0},"b":2}', "receipt")).toBe('{"x":1.0}');
    expect(rawMemberText('{"receipt":1,"receipt":  [1.0, 2e+3]  }', "receipt")).toBe("[1.0, 2e+3]");
    expect(rawMemberText('{"nested":{"receipt":5}}', "receipt")).toBeNull();
    expect(rawMemberText('{"re\\u0063eipt":"v"}', "receipt")).toBe('"v"');
    expect(rawMemberText('{"receipt":null}', "receipt")).toBeNull();
    expect(rawMemberText("[1,2]", "receipt")).toBeNull();
    expect(rawMemberText("{}", "receipt")).toBeNull();
    expect(rawMemberText('{"receipt":', "receipt")).toBeNull();
    expect(rawMemberText("not json", "receipt")).toBeNull();
  });

  it("finds any JSON value's text inside any surrounding object", () => {
    // Re-serialise generated values with arbitrary spacing so the scanner sees varied layouts.
    const value = fc.jsonValue().map((v) => JSON.stringify(v, null, 1) ?? "null");
    fc.assert(
      fc.property(
        fc.dictionary(
          fc.string().filter((k) => k !== "receipt"),
          fc.jsonValue(),
        ),
        value.filter((t) => t !== "null"),
        fc.nat(5),
        (others, receiptText, pos) => {
          const members = Object.entries(others).map(
            ([k, v]) => `${JSON.stringify(k)} : ${JSON.stringify(v)}`,
          );
          members.splice(Math.min(pos, members.length), 0, `"receipt":\n${receiptText}`);
          const body = `{ ${members.join(" ,\n")} }`;
          expect(rawMemberText(body, "receipt")).toBe(receiptText);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("topLevelStringMember", () => {
  it("reads as far as the text goes: members before a break stand, only strings count", () => {
    expect(topLevelStringMember('{"job_id":"j-1","payload":{"prompt":"cut', "job_id")).toBe("j-1");
    expect(topLevelStringMember('{"job_id":"j-1","payload":1,"job_id":"j-2"}', "job_id")).toBe("j-2");
    expect(topLevelStringMember('{"payload":1,"job_id":"j-1",}', "job_id")).toBe("j-1");
    expect(topLevelStringMember('{"job_id":7}', "job_id")).toBeNull();
    expect(topLevelStringMember('{"job_id":"j-1" "x":1}', "job_id")).toBe("j-1");
    expect(topLevelStringMember('{"payload":"cut before the id', "job_id")).toBeNull();
    expect(topLevelStringMember('["job_id","j-1"]', "job_id")).toBeNull();
  });
});
