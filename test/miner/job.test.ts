import { describe, expect, it } from "vitest";
import { checkConstraints, validatePayload } from "../../src/miner/screening.js";

const limits = { maxPromptChars: 100, maxTokens: 64, defaultMaxTokens: 16 };

describe("job payload validation", () => {
  it("accepts a minimal inference payload with defaults", () => {
    const v = validatePayload({ model: "tiny", prompt: "hi" }, limits);
    expect(v).toEqual({
      ok: true,
      request: {
        model: "tiny",
        prompt: "hi",
        maxTokens: 16,
        temperature: 0.7,
        topP: undefined,
        seed: undefined,
        stop: [],
      },
    });
  });

  it("keeps bounded parameters", () => {
    const v = validatePayload(
      {
        type: "inference",
        model: "m",
        prompt: "p",
        max_tokens: 64,
        temperature: 0,
        top_p: 0.9,
        seed: 7,
        stop: "\n",
      },
      limits,
    );
    expect(v.ok && v.request).toMatchObject({
      maxTokens: 64,
      temperature: 0,
      topP: 0.9,
      seed: 7,
      stop: ["\n"],
    });
  });

  it.each([
    ["not an object", "invalid_payload"],
    [[1, 2], "invalid_payload"],
    [null, "invalid_payload"],
    [{ type: "training", model: "m", prompt: "p" }, "unsupported_job_type"],
    [{ model: "m" }, "invalid_prompt"],
    [{ model: "m", prompt: 42 }, "invalid_prompt"],
    [{ model: "m", prompt: "" }, "invalid_prompt"],
    [{ model: "m", prompt: "x".repeat(101) }, "prompt_too_long"],
    [{ prompt: "p" }, "invalid_model"],
    [{ model: "", prompt: "p" }, "invalid_model"],
    [{ model: "m", prompt: "p", max_tokens: -1 }, "invalid_max_tokens"],
    [{ model: "m", prompt: "p", max_tokens: "10" }, "invalid_max_tokens"],
    [{ model: "m", prompt: "p", max_tokens: 1.5 }, "invalid_max_tokens"],
    [{ model: "m", prompt: "p", max_tokens: 65 }, "invalid_max_tokens"],
    [{ model: "m", prompt: "p", temperature: "hot" }, "invalid_parameter"],
    [{ model: "m", prompt: "p", temperature: 3 }, "invalid_parameter"],
    [{ model: "m", prompt: "p", seed: -1 }, "invalid_parameter"],
    [{ model: "m", prompt: "p", stop: [1] }, "invalid_parameter"],
    [{ model: "m", prompt: "p", stop: Array(9).fill("x") }, "invalid_parameter"],
  ])("rejects %j as %s", (payload, code) => {
    const v = validatePayload(payload, limits);
    expect(v.ok).toBe(false);
    if (!v.ok) {
      expect(v.rejection.errorCode).toBe(code);
      expect(v.rejection.message.length).toBeGreaterThan(5);
    }
  });
});

describe("constraints", () => {
  const host = { models: ["tiny"], gpuNames: ["NVIDIA H100"], maxVramGb: 80, cuda: "12.4" };
  it("passes what the host meets", () => {
    expect(
      checkConstraints({ gpu: "NVIDIA H100", min_vram_gb: 40, cuda: "12", models: ["tiny"] }, host),
    ).toBeNull();
    expect(checkConstraints(undefined, host)).toBeNull();
  });
  it.each([
    [{ gpu: "NVIDIA A100" }, "constraints_unmet"],
    [{ min_vram_gb: 96 }, "constraints_unmet"],
    [{ cuda: "11.8" }, "constraints_unmet"],
    [{ models: ["llama3"] }, "model_not_found"],
    ["x", "invalid_payload"],
  ])("refuses %j", (c, code) => {
    expect(checkConstraints(c, host)?.errorCode).toBe(code);
  });
});
