// Ollama adapter (docs/models.md): GET /api/tags lists models, POST /api/generate runs one job.
// Every response is bounded (time and bytes) and validated; failures become BackendErrors.
import { request } from "undici";
import { z } from "zod";
import type { Logger } from "../log.js";
import {
  type Backend,
  BackendError,
  type BackendErrorCode,
  type InferenceRequest,
  type InferenceResult,
  type ModelInfo,
} from "./types.js";

export interface OllamaBackendOptions {
  url: string;
  log: Logger;
  /** Whole-request limit for /api/generate (headers and body). */
  timeoutMs: number;
  /** Response size cap (default 8 MiB). */
  maxBodyBytes?: number | undefined;
  /** Limit for /api/tags (default min(timeoutMs, 10 s)). */
  tagsTimeoutMs?: number | undefined;
  /** Refresh the tag list this often (default 60 s; 0 = only on demand). */
  refreshIntervalMs?: number | undefined;
  /** --unload-after-job: ask Ollama to unload the model as soon as each job ends (keep_alive 0). */
  unloadAfterJob?: boolean | undefined;
}

export interface OllamaBackend extends Backend {
  /** Fetch /api/tags now; throws BackendError when Ollama cannot be reached. */
  refresh(): Promise<void>;
}

const tagsSchema = z.object({
  models: z.array(
    z.object({
      name: z.string().min(1).max(512),
      model: z.string().optional(),
      size: z.number().int().nonnegative().optional(),
    }),
  ),
});

const generateSchema = z.object({
  response: z.string(),
  done: z.boolean().optional(),
  done_reason: z.string().optional(),
  eval_count: z.number().int().nonnegative().optional(),
  prompt_eval_count: z.number().int().nonnegative().optional(),
  total_duration: z.number().nonnegative().optional(),
});

const DEFAULT_MAX_BODY = 8 * 1024 * 1024;

class TimeoutError extends Error {}

/** Ollama spells the default tag ":latest"; "NAME" and "NAME:latest" are the same model. */
function canonical(name: string): string {
  return name.includes(":") ? name : `${name}:latest`;
}

export function createOllamaBackend(opts: OllamaBackendOptions): OllamaBackend {
  const log = opts.log.child({ component: "ollama" });
  const base = opts.url.replace(/\/+$/, "");
  const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const tagsTimeout = opts.tagsTimeoutMs ?? Math.min(opts.timeoutMs, 10_000);
  let models: ModelInfo[] = [];
  let timer: NodeJS.Timeout | null = null;
  let closed = false;

  /** One bounded HTTP exchange: status and at most maxBody bytes of body, within timeoutMs. */
  async function exchange(
    method: "GET" | "POST",
    path: string,
    body: unknown,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<{ status: number; text: string }> {
    const timeout = new AbortController();
    const timer = setTimeout(
      () => timeout.abort(new TimeoutError(`timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    const combined = signal ? AbortSignal.any([signal, timeout.signal]) : timeout.signal;
    try {
      const res = await request(`${base}${path}`, {
        method,
        signal: combined,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body: body === undefined ? null : JSON.stringify(body),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length;
        if (size > maxBody) {
          res.body.destroy();
          throw new BackendError("inference_failed", `Ollama ${path}: response larger than ${maxBody} bytes`);
        }
        chunks.push(chunk as Buffer);
      }
      return { status: res.statusCode, text: Buffer.concat(chunks).toString("utf8") };
    } catch (err) {
      if (err instanceof BackendError) throw err;
      if (signal?.aborted) throw new BackendError("aborted", `Ollama ${path}: job aborted`, { cause: err });
      if (timeout.signal.aborted) {
        throw new BackendError("inference_failed", `Ollama ${path}: timed out after ${timeoutMs} ms`, {
          cause: err,
        });
      }
      const code = (err as NodeJS.ErrnoException).code;
      throw new BackendError(
        "backend_unavailable",
        `Ollama at ${base} unreachable (${code ?? (err as Error).message})`,
        { cause: err },
      );
    } finally {
      clearTimeout(timer);
    }
  }

  function parseJson(text: string, path: string): unknown {
    try {
      return JSON.parse(text);
    } catch {
      throw new BackendError("inference_failed", `Ollama ${path}: malformed JSON response`);
    }
  }

  function httpError(path: string, status: number, text: string, model?: string): BackendError {
    let detail = text.slice(0, 200);
    try {
      const j = JSON.parse(text) as { error?: unknown };
      if (typeof j.error === "string") detail = j.error.slice(0, 200);
    } catch {
      // not JSON: keep the raw (truncated) text
    }
    // Ollama answers 404 for a model it does not have; everything else fails the job as is.
    const code: BackendErrorCode =
      status === 404 && model !== undefined ? "model_not_found" : "inference_failed";
    return new BackendError(code, `Ollama ${path}: HTTP ${status}${detail ? `: ${detail}` : ""}`);
  }

  async function refresh(): Promise<void> {
    const { status, text } = await exchange("GET", "/api/tags", undefined, tagsTimeout);
    if (status !== 200) throw httpError("/api/tags", status, text);
    const parsed = tagsSchema.safeParse(parseJson(text, "/api/tags"));
    if (!parsed.success)
      throw new BackendError("inference_failed", "Ollama /api/tags: unexpected response shape");
    models = parsed.data.models.map((m) => ({
      name: m.name,
      sizeBytes: m.size ?? null,
      source: `ollama:${base}`,
    }));
  }

  function find(name: string): ModelInfo | undefined {
    const want = canonical(name);
    return models.find((m) => canonical(m.name) === want);
  }

  const backend: OllamaBackend = {
    name: "ollama",
    refresh,
    async init() {
      try {
        await refresh();
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        throw new BackendError("backend_unavailable", `${msg}; is \`ollama serve\` running at ${base}?`, {
          cause: err,
        });
      }
      log.info({ event: "models", models: models.map((m) => m.name) }, `${models.length} Ollama model(s)`);
      const every = opts.refreshIntervalMs ?? 60_000;
      if (every > 0 && !timer && !closed) {
        timer = setInterval(() => {
          refresh().catch((err: Error) =>
            log.warn({ event: "ollama_tags_failed", err: err.message }, "Ollama tag refresh failed"),
          );
        }, every);
        timer.unref();
      }
    },
    listModels() {
      return [...models];
    },
    hasModel(name) {
      return find(name) !== undefined;
    },
    hasExactModel(name) {
      // Ollama itself names "NAME" and "NAME:latest" the same model: no fallback is involved.
      return find(name) !== undefined;
    },
    async generate(req: InferenceRequest, signal: AbortSignal): Promise<InferenceResult> {
      if (signal.aborted) throw new BackendError("aborted", "job aborted before it started");
      if (!find(req.model)) {
        // The list may be stale (a model pulled since): look once more before refusing.
        await refresh().catch(() => undefined);
        if (!find(req.model)) {
          throw new BackendError(
            "model_not_found",
            `model ${JSON.stringify(req.model)} is not in Ollama at ${base}`,
          );
        }
      }
      const t0 = performance.now();
      const options: Record<string, unknown> = { num_predict: req.maxTokens, temperature: req.temperature };
      if (req.topP !== undefined) options["top_p"] = req.topP;
      if (req.seed !== undefined) options["seed"] = req.seed;
      if (req.stop.length > 0) options["stop"] = req.stop;
      const body = {
        model: req.model,
        prompt: req.prompt,
        stream: false,
        options,
        ...(opts.unloadAfterJob ? { keep_alive: 0 } : {}),
      };
      const { status, text } = await exchange("POST", "/api/generate", body, opts.timeoutMs, signal);
      if (status !== 200) throw httpError("/api/generate", status, text, req.model);
      const parsed = generateSchema.safeParse(parseJson(text, "/api/generate"));
      if (!parsed.success) {
        throw new BackendError(
          "inference_failed",
          "Ollama /api/generate: response lacks a string `response`",
        );
      }
      const r = parsed.data;
      const completionTokens = r.eval_count ?? 0;
      return {
        output: r.response,
        model: req.model,
        backend: "ollama",
        promptTokens: r.prompt_eval_count ?? 0,
        completionTokens,
        durationMs:
          r.total_duration !== undefined
            ? Math.round(r.total_duration / 1e6)
            : Math.round(performance.now() - t0),
        stopReason:
          r.done_reason === "stop"
            ? req.stop.length > 0 && completionTokens < req.maxTokens
              ? "stop"
              : "eos"
            : r.done_reason === "length"
              ? "maxTokens"
              : "other",
      };
    },
    async unloadAll() {
      // Ollama manages its own memory (keep_alive, 0 with unloadAfterJob); nothing is held here.
    },
    async close() {
      closed = true;
      if (timer) clearInterval(timer);
      timer = null;
    },
  };
  return backend;
}
