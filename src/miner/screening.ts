// Job validation: an untrusted payload from the coordinator becomes a bounded InferenceRequest,
// or a JobRejection with an error_code the coordinator understands. Never throws.
import type { InferenceRequest } from "../backends/types.js";

export interface JobLimits {
  maxPromptChars: number;
  maxTokens: number;
  defaultMaxTokens: number;
}

export type JobErrorCode =
  | "invalid_payload"
  | "unsupported_job_type"
  | "invalid_prompt"
  | "prompt_too_long"
  | "invalid_model"
  | "invalid_max_tokens"
  | "invalid_parameter"
  | "model_not_found"
  | "constraints_unmet";

export interface JobRejection {
  errorCode: JobErrorCode;
  message: string;
}

export type Validated = { ok: true; request: InferenceRequest } | { ok: false; rejection: JobRejection };

const MAX_STOP = 8;
const MAX_STOP_LEN = 128;

function reject(errorCode: JobErrorCode, message: string): Validated {
  return { ok: false, rejection: { errorCode, message } };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "string" ? "a string" : `a ${typeof v}`;
}

function optionalNumber(
  payload: Record<string, unknown>,
  key: string,
  min: number,
  max: number,
  integer: boolean,
): number | undefined | JobRejection {
  const v = payload[key];
  if (v === undefined || v === null) return undefined;
  if (
    typeof v !== "number" ||
    !Number.isFinite(v) ||
    (integer && !Number.isInteger(v)) ||
    v < min ||
    v > max
  ) {
    return {
      errorCode: "invalid_parameter",
      message: `${key} must be ${integer ? "an integer" : "a number"} in [${min}, ${max}], got ${JSON.stringify(v)?.slice(0, 40)}`,
    };
  }
  return v;
}

/** Validate an inference payload (docs/protocols.md). */
export function validatePayload(payload: unknown, limits: JobLimits): Validated {
  if (!isPlainObject(payload))
    return reject("invalid_payload", `payload must be a JSON object, got ${describe(payload)}`);
  const type = payload["type"];
  if (type !== undefined && type !== null && type !== "inference") {
    return reject(
      "unsupported_job_type",
      `job type ${JSON.stringify(type).slice(0, 64)} is not supported (this miner runs "inference")`,
    );
  }
  const model = payload["model"];
  if (typeof model !== "string" || model.trim() === "" || model.length > 256) {
    return reject(
      "invalid_model",
      `model must be a non-empty string of at most 256 characters, got ${describe(model)}`,
    );
  }
  const prompt = payload["prompt"];
  if (typeof prompt !== "string")
    return reject("invalid_prompt", `prompt must be a string, got ${describe(prompt)}`);
  if (prompt.length === 0) return reject("invalid_prompt", "prompt is empty");
  if (prompt.length > limits.maxPromptChars) {
    return reject(
      "prompt_too_long",
      `prompt has ${prompt.length} characters; this miner accepts at most ${limits.maxPromptChars}`,
    );
  }

  let maxTokens = limits.defaultMaxTokens;
  const mt = payload["max_tokens"];
  if (mt !== undefined && mt !== null) {
    if (typeof mt !== "number" || !Number.isInteger(mt) || mt < 1 || mt > limits.maxTokens) {
      return reject(
        "invalid_max_tokens",
        `max_tokens must be an integer in [1, ${limits.maxTokens}], got ${JSON.stringify(mt)?.slice(0, 40)}`,
      );
    }
    maxTokens = mt;
  }
  const temperature = optionalNumber(payload, "temperature", 0, 2, false);
  if (typeof temperature === "object") return { ok: false, rejection: temperature };
  const topP = optionalNumber(payload, "top_p", 0, 1, false);
  if (typeof topP === "object") return { ok: false, rejection: topP };
  const seed = optionalNumber(payload, "seed", 0, 0xffffffff, true);
  if (typeof seed === "object") return { ok: false, rejection: seed };

  const stopRaw = payload["stop"];
  let stop: string[] = [];
  if (stopRaw !== undefined && stopRaw !== null) {
    const list = typeof stopRaw === "string" ? [stopRaw] : stopRaw;
    if (
      !Array.isArray(list) ||
      list.length > MAX_STOP ||
      !list.every((s): s is string => typeof s === "string" && s.length > 0 && s.length <= MAX_STOP_LEN)
    ) {
      return reject(
        "invalid_parameter",
        `stop must be a string or a list of at most ${MAX_STOP} non-empty strings of at most ${MAX_STOP_LEN} characters`,
      );
    }
    stop = list;
  }
  return {
    ok: true,
    request: { model, prompt, maxTokens, temperature: temperature ?? 0.7, topP, seed, stop },
  };
}

export interface HostFacts {
  models: string[];
  gpuNames: string[];
  maxVramGb: number;
  cuda: string | null;
}

/** Re-check the job's constraints against this host: the coordinator matched them, we do not trust it blindly. */
export function checkConstraints(constraints: unknown, host: HostFacts): JobRejection | null {
  if (constraints === undefined || constraints === null) return null;
  if (!isPlainObject(constraints))
    return { errorCode: "invalid_payload", message: "constraints must be an object" };
  const gpu = constraints["gpu"];
  if (typeof gpu === "string" && gpu !== "" && !host.gpuNames.includes(gpu)) {
    return {
      errorCode: "constraints_unmet",
      message: `job needs GPU ${JSON.stringify(gpu)}; this host has ${host.gpuNames.join(", ") || "no GPU"}`,
    };
  }
  const minVram = constraints["min_vram_gb"];
  if (typeof minVram === "number" && minVram > host.maxVramGb) {
    return {
      errorCode: "constraints_unmet",
      message: `job needs ${minVram} GB of VRAM; the largest GPU here has ${host.maxVramGb.toFixed(1)} GB`,
    };
  }
  const cuda = constraints["cuda"];
  if (typeof cuda === "string" && cuda !== "" && !(host.cuda ?? "").includes(cuda)) {
    return {
      errorCode: "constraints_unmet",
      message: `job needs CUDA ${cuda}; this host has ${host.cuda ?? "none"}`,
    };
  }
  const models = constraints["models"];
  if (Array.isArray(models)) {
    const missing = models.filter((m) => typeof m !== "string" || !host.models.includes(m));
    if (missing.length > 0) {
      return {
        errorCode: "model_not_found",
        message: `job needs models this miner does not serve: ${missing
          .map((m) => JSON.stringify(m))
          .join(", ")
          .slice(0, 200)}`,
      };
    }
  }
  return null;
}
