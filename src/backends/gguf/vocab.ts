// The generated models' SentencePiece vocabulary: specials, the 256 byte tokens, then text pieces,
// so any prompt tokenizes; and which tokens are silenced (their output rows zeroed) so that
// generation never ends early on an end-of-generation token and prints only printable ASCII.
import type { KvEntry } from "./encode.js";

const SPECIALS = ["<unk>", "<s>", "</s>"] as const;
/** The id of the first byte token `<0x00>`. */
export const BYTE_BASE = SPECIALS.length;
/** The id of the first text piece: everything before is a special or a byte token. */
export const FIRST_PIECE = BYTE_BASE + 256;
const SPACE = "\u2581"; // SentencePiece's word-boundary marker
const LETTERS = "etaoinshrdlucmfwypvbgkjqxz";

/** The vocabulary: specials, the 256 byte tokens, then text pieces so prompts tokenize compactly. */
export function tinyVocab(size: number): string[] {
  const tokens: string[] = [...SPECIALS];
  for (let b = 0; b < 256; b++) tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
  const seen = new Set(tokens);
  const add = (p: string) => {
    if (tokens.length < size && !seen.has(p)) {
      seen.add(p);
      tokens.push(p);
    }
  };
  add(SPACE);
  for (const c of LETTERS) add(c);
  for (const c of LETTERS) add(SPACE + c);
  for (const c of "ETAOINSHRDLUCMFWYPVBGKJQXZ0123456789.,!?'\"-:;()") add(c);
  for (let c = 0x21; c <= 0x7e; c++) add(String.fromCharCode(c));
  for (const a of LETTERS) for (const b of LETTERS) add(a + b);
  for (const a of LETTERS) for (const b of LETTERS) add(SPACE + a + b);
  // Large vocabularies (Llama 3's 128256): deterministic three-letter pieces, then numbered ones.
  for (let i = 0; tokens.length < size; i++) {
    const p = LETTERS[i % 26]! + LETTERS[Math.floor(i / 26) % 26]! + LETTERS[Math.floor(i / 676) % 26]!;
    add(i < 17576 ? p : `${SPACE}${p}${Math.floor(i / 17576)}`);
  }
  return tokens;
}

/**
 * Tokens whose output row is zeroed: the specials (unknown, BOS and EOS, the only
 * end-of-generation token) and the non-printable bytes. Their logit is then 0 while the others
 * spread wide, so they are never picked, greedy or sampled.
 */
export function isSilenced(id: number): boolean {
  if (id < BYTE_BASE) return true;
  if (id < FIRST_PIECE) {
    const b = id - BYTE_BASE;
    return b < 0x20 || b > 0x7e;
  }
  return false;
}

/** The tokenizer's metadata: an SPM (`llama`) tokenizer over tinyVocab(size). */
export function spmTokenizerKv(size: number): KvEntry[] {
  const tokens = tinyVocab(size);
  // Token types: 2 unknown, 3 control, 6 byte, 1 normal.
  const types = tokens.map((_, id) => (id === 0 ? 2 : id < BYTE_BASE ? 3 : id < FIRST_PIECE ? 6 : 1));
  // SPM merges prefer higher scores: longer pieces score higher so words use them.
  const scores = tokens.map((t, id) => (id < FIRST_PIECE ? 0 : -id / size + t.length));
  return [
    ["tokenizer.ggml.model", { t: "string", v: "llama" }],
    ["tokenizer.ggml.tokens", { t: "strings", v: tokens }],
    ["tokenizer.ggml.scores", { t: "f32s", v: scores }],
    ["tokenizer.ggml.token_type", { t: "i32s", v: types }],
    ["tokenizer.ggml.unknown_token_id", { t: "u32", v: 0 }],
    ["tokenizer.ggml.bos_token_id", { t: "u32", v: 1 }],
    ["tokenizer.ggml.eos_token_id", { t: "u32", v: 2 }],
    ["tokenizer.ggml.add_bos_token", { t: "bool", v: true }],
    ["tokenizer.ggml.add_eos_token", { t: "bool", v: false }],
  ];
}
