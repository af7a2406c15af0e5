// One completion on a checked-out sequence: the prompt tokenized as LlamaCompletion feeds it,
// refused when the context cannot hold all of it, generated without shifting it out, and the
// stop reason mapped to ours. Stateless: the pool owns models and sequences.
import {
  LlamaCompletion,
  type LlamaContextSequence,
  type LlamaModel,
  LlamaVocabularyType,
  type Token,
} from "node-llama-cpp";
import { BackendError, type InferenceRequest, type InferenceResult } from "../types.js";

/** The token LlamaCompletion prepends to every input (node-llama-cpp's tokenizerUtils, 3.21.1). */
function beginningToken(model: LlamaModel): Token | null {
  const type = model.vocabularyType;
  if (type === LlamaVocabularyType.rwkv || type === LlamaVocabularyType.ugm) return null;
  if (type === LlamaVocabularyType.wpm) return model.tokens.bos;
  return model.tokens.shouldPrependBosToken ? model.tokens.bos : null;
}

/** Defence in depth: the sequence must still hold the whole prompt after generation. */
function assertWholePrompt(seq: LlamaContextSequence, model: LlamaModel, prompt: Token[]): void {
  const held = seq.contextTokens;
  const offset = beginningToken(model) === null ? 0 : 1;
  const intact = prompt.every((t, i) => held[i + offset] === t);
  if (!intact) {
    throw new BackendError(
      "inference_failed",
      "the prompt was shifted out of the context during generation; the output does not answer it",
    );
  }
}

/**
 * The tokens LlamaCompletion feeds for `prompt`: its tokenization (leading space trimmed when a
 * beginning token is prepended, as LlamaCompletion does) and that token, if the vocabulary has one.
 */
function promptInput(model: LlamaModel, prompt: string): { tokens: Token[]; fed: number } {
  const bos = beginningToken(model);
  const tokens = model.tokenize(prompt, false, bos === null ? undefined : "trimLeadingSpace");
  return { tokens, fed: tokens.length + (bos === null ? 0 : 1) };
}

export async function runCompletion(
  model: LlamaModel,
  seq: LlamaContextSequence,
  req: InferenceRequest,
  signal: AbortSignal,
): Promise<Omit<InferenceResult, "model" | "backend" | "durationMs">> {
  const { tokens, fed } = promptInput(model, req.prompt);
  const contextSize = seq.contextSize;
  // The receipt's prompt_hash covers the whole prompt, so the model must see all of it: refuse
  // rather than let node-llama-cpp drop tokens from the start to make room.
  if (fed + 1 > contextSize) {
    throw new BackendError(
      "inference_failed",
      `prompt is ${fed} tokens; the context holds ${contextSize} tokens per sequence, leaving no room ` +
        `for a generated token (raise --context-size or shorten the prompt)`,
    );
  }
  // Generation stops when the context is full instead of shifting prompt tokens out.
  const maxTokens = Math.min(req.maxTokens, contextSize - fed);
  let completionTokens = 0;
  const completion = new LlamaCompletion({ contextSequence: seq });
  try {
    const greedy = req.temperature <= 0;
    const r = await completion.generateCompletionWithMeta(tokens, {
      maxTokens,
      temperature: greedy ? 0 : req.temperature,
      ...(greedy || req.topP === undefined ? {} : { topP: req.topP }),
      ...(greedy || req.seed === undefined ? {} : { seed: req.seed }),
      ...(req.stop.length > 0 ? { customStopTriggers: req.stop } : {}),
      // Input may fill the context up to one token (checked above), and it is never shifted.
      contextShiftSize: 1,
      disableContextShift: true,
      onToken: (t) => {
        completionTokens += t.length;
      },
      signal,
      stopOnAbortSignal: false,
    });
    assertWholePrompt(seq, model, tokens);
    const reason = r.metadata.stopReason;
    return {
      output: r.response,
      promptTokens: fed,
      completionTokens,
      stopReason:
        reason === "eogToken"
          ? "eos"
          : reason === "maxTokens"
            ? "maxTokens"
            : reason === "customStopTrigger" || reason === "stopGenerationTrigger"
              ? "stop"
              : reason === "abort"
                ? "aborted"
                : "other",
    };
  } finally {
    completion.dispose({ disposeSequence: false });
  }
}

/**
 * One throwaway token on a fresh context: its first decode allocates the compute buffers,
 * which the first job should not pay for.
 */
export async function primeSequence(seq: LlamaContextSequence): Promise<void> {
  const completion = new LlamaCompletion({ contextSequence: seq });
  try {
    await completion.generateCompletion(" ", { maxTokens: 1 });
  } finally {
    completion.dispose({ disposeSequence: false });
  }
}
