// The one retry rule: every failure of a coordinator call mapped to a verdict, per call.
import { describe, expect, it } from "vitest";
import { Backoff } from "../../src/backoff.js";
import { CoordinatorError, type CoordinatorErrorKind } from "../../src/coordinator/errors.js";
import { ExitCode } from "../../src/miner/exit-codes.js";
import { AUTH_RETRY_MS, decide, type RetriedCall } from "../../src/miner/retry.js";

const backoff = () => new Backoff({ baseMs: 100, capMs: 1000, random: () => 0.5 });
const err = (kind: CoordinatorErrorKind, status: number | null = null, retryAfterMs: number | null = null) =>
  new CoordinatorError(kind, `${kind}`, status, retryAfterMs);
const calls: RetriedCall[] = ["register", "heartbeat", "poll", "submit", "fail"];

describe("decide(err, call)", () => {
  it("credentials refused: registration and polling stop (exit 2); owed deliveries and heartbeats wait 60 s", () => {
    for (const call of calls) {
      const v = decide(err("auth", 401), call, backoff());
      if (call === "register" || call === "poll") {
        expect(v).toMatchObject({ kind: "fatal", exitCode: ExitCode.badSettings });
        expect((v as { message: string }).message).toContain("--api-key-file");
      } else expect(v).toEqual({ kind: "retry", afterMs: AUTH_RETRY_MS });
    }
  });

  it("404/409: a delivery is gone (409 = already done); a poll's 404 means register again", () => {
    expect(decide(err("not_found", 404), "submit", backoff())).toEqual({ kind: "gone", alreadyDone: false });
    expect(decide(err("conflict", 409), "submit", backoff())).toEqual({ kind: "gone", alreadyDone: true });
    expect(decide(err("conflict", 409), "fail", backoff())).toEqual({ kind: "gone", alreadyDone: true });
    expect(decide(err("not_found", 404), "poll", backoff())).toEqual({ kind: "gone", alreadyDone: false });
    expect(decide(err("not_found", 404), "heartbeat", backoff())).toEqual({
      kind: "gone",
      alreadyDone: false,
    });
    expect(decide(err("conflict", 409), "poll", backoff()).kind).toBe("retry");
    expect(decide(err("not_found", 404), "register", backoff()).kind).toBe("retry");
  });

  it("a 4xx retrying cannot fix: a delivery is rejected, registration is fatal, a poll retries", () => {
    expect(decide(err("client", 422), "submit", backoff())).toEqual({ kind: "rejected", status: 422 });
    expect(decide(err("client", 400), "fail", backoff())).toEqual({ kind: "rejected", status: 400 });
    expect(decide(err("client", 400), "register", backoff())).toMatchObject({ kind: "fatal", exitCode: 2 });
    expect(decide(err("client", 400), "poll", backoff()).kind).toBe("retry");
    // 408 and 425 are retryable 4xx.
    for (const call of calls) expect(decide(err("client", 408), call, backoff()).kind).toBe("retry");
  });

  it("everything else retries with backoff, never sooner than Retry-After", () => {
    for (const kind of ["server", "timeout", "network", "bad_response", "rate_limited"] as const) {
      for (const call of calls) {
        const v = decide(err(kind, 500, kind === "rate_limited" ? 5000 : null), call, backoff());
        expect(v.kind).toBe("retry");
        if (kind === "rate_limited") expect((v as { afterMs: number }).afterMs).toBe(5000);
        else expect((v as { afterMs: number }).afterMs).toBe(50);
      }
    }
    expect(decide(new Error("boom"), "submit", backoff())).toEqual({ kind: "retry", afterMs: 50 });
  });

  it("a poll's 5xx may mean the coordinator forgot this miner (upstream): the verdict says to check", () => {
    expect(decide(err("server", 500), "poll", backoff())).toEqual({
      kind: "retry",
      afterMs: 50,
      checkMembership: true,
    });
    for (const call of calls.filter((c) => c !== "poll"))
      expect(decide(err("server", 500), call, backoff())).not.toHaveProperty("checkMembership");
    expect(decide(err("timeout"), "poll", backoff())).not.toHaveProperty("checkMembership");
  });
});
