// The one table from how a generation threw to the job's verdict.
import { describe, expect, it } from "vitest";
import { BackendError } from "../../src/backends/types.js";
import { CANCELLED } from "../../src/miner/job-cancel.js";
import { generationEnd, unstorablePayload } from "../../src/miner/job-failure.js";
import { WedgedError } from "../../src/miner/watchdog.js";

describe("generationEnd(err, abort reason, budget)", () => {
  it("the abort's reason names the verdict, whatever the backend threw", () => {
    const err = new BackendError("aborted", "aborted");
    expect(generationEnd(err, "deadline", 30)).toEqual({
      kind: "failed",
      code: "timeout",
      message: "job exceeded its deadline of 30 s",
      wedged: false,
    });
    expect(generationEnd(err, "shutting_down", 30)).toMatchObject({ code: "shutting_down", wedged: false });
    expect(generationEnd(err, "gpu_unavailable", 30)).toMatchObject({
      code: "gpu_unavailable",
      message: expect.stringContaining("drained"),
    });
  });

  it("cancelled by the coordinator: no verdict, unless the backend wedged (then timeout and stop)", () => {
    expect(generationEnd(new BackendError("aborted", "x"), CANCELLED, 30)).toEqual({ kind: "cancelled" });
    expect(generationEnd(new WedgedError("stuck"), CANCELLED, 30)).toEqual({
      kind: "failed",
      code: "timeout",
      message: "stuck",
      wedged: true,
    });
    expect(generationEnd(new WedgedError("stuck"), "deadline", 30)).toMatchObject({ wedged: true });
  });

  it("not aborted: the backend's own code, else inference_failed", () => {
    expect(generationEnd(new BackendError("model_load_failed", "bad file"), undefined, 30)).toEqual({
      kind: "failed",
      code: "model_load_failed",
      message: "bad file",
      wedged: false,
    });
    expect(generationEnd(new Error("boom"), undefined, 30)).toMatchObject({
      code: "inference_failed",
      message: "boom",
    });
    // A reason that is no AbortWhy (e.g. a plain abort()) does not pick a verdict.
    expect(generationEnd(new Error("boom"), "toString", 30)).toMatchObject({ code: "inference_failed" });
  });

  it("a claim that cannot be stored is an invalid payload", () => {
    expect(unstorablePayload(new RangeError("too deep"))).toEqual({
      code: "invalid_payload",
      message: "the payload cannot be stored: too deep",
    });
  });
});
