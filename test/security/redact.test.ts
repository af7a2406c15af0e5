import { describe, expect, it } from "vitest";
import { describeError } from "../../src/describe-error.js";
import { redactUrlCredentials, urlCredentials } from "../../src/redact.js";

describe("URL credentials", () => {
  it("are masked wherever a URL appears in a text", () => {
    expect(redactUrlCredentials("GET https://u:p%40ss@host:8/a?b=c@d failed")).toBe(
      "GET https://***@host:8/a?b=c@d failed",
    );
    expect(redactUrlCredentials('"http://tok@h" and ftp://a:b@c/x')).toBe('"http://***@h" and ftp://***@c/x');
    expect(redactUrlCredentials("https://host/path?mail=a@b")).toBe("https://host/path?mail=a@b");
    expect(redactUrlCredentials("user@example.com")).toBe("user@example.com");
  });

  it("register the password (or a lone token), not a user name beside a password", () => {
    expect(urlCredentials("https://miner:p%40ss@h").sort()).toEqual([
      "miner:p%40ss",
      "miner:p@ss",
      "p%40ss",
      "p@ss",
    ]);
    expect(urlCredentials("https://tok123@h")).toEqual(["tok123"]);
    expect(urlCredentials("https://h")).toEqual([]);
    expect(urlCredentials("not a url")).toEqual([]);
  });

  it("never reach a log line through an error", () => {
    expect(describeError(new Error("fetch https://u:secret@h failed"))["message"]).toBe(
      "fetch https://***@h failed",
    );
  });
});
