import { createHash } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readGgufFileInfo } from "node-llama-cpp";
import { describe, expect, it } from "vitest";
import {
  BENCH_PRESET,
  encodeTinyGguf,
  ensureTinyModel,
  resolveTinyOptions,
  tinyVocab,
  toHalf,
  writeTinyGguf,
} from "../../src/backends/tiny-gguf.js";
import { tempDir } from "../support/backends.js";

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("tiny GGUF generator", () => {
  it("writes the same bytes for the same options and different bytes for another seed", () => {
    const a = encodeTinyGguf({ seed: 7 });
    const b = encodeTinyGguf({ seed: 7 });
    const c = encodeTinyGguf({ seed: 8 });
    expect(sha(a)).toBe(sha(b));
    expect(sha(a)).not.toBe(sha(c));
    expect(a.length).toBe(c.length);
    // ~0.5 MB default test model
    expect(a.length).toBeGreaterThan(400_000);
    expect(a.length).toBeLessThan(600_000);
  });

  it("keeps its exact bytes (pinned: the generator's shared modules must not change them)", () => {
    expect(sha(encodeTinyGguf())).toBe("6aaa1ccaa70ce21ec2f57dd593d3e2200fe2489672e81d0174d325813414ed0c");
    expect(sha(encodeTinyGguf(BENCH_PRESET))).toBe(
      "398f3787ce8722cd30aa50c3cf924d17e6b92b74b8554db9b6d24affb75127a1",
    );
  });

  it("produces a GGUF v3 llama file with the metadata llama.cpp needs", async () => {
    const dir = tempDir();
    const path = join(dir, "m.gguf");
    writeTinyGguf(path, { name: "m", f16: true });
    const info = await readGgufFileInfo(path);
    expect(info.version).toBe(3);
    const md = info.metadata as unknown as Record<string, Record<string, unknown>>;
    expect(md["general"]?.["architecture"]).toBe("llama");
    const llama = md["llama"] as Record<string, unknown> & { attention: Record<string, unknown> };
    expect(llama["feed_forward_length"]).toBe(128);
    expect(llama["context_length"]).toBe(512);
    expect(llama.attention["layer_norm_rms_epsilon"]).toBeCloseTo(1e-5);
    const tok = md["tokenizer"]?.["ggml"] as Record<string, unknown>;
    expect(tok["model"]).toBe("llama");
    const types = tok["token_type"] as number[];
    const tokens = tok["tokens"] as string[];
    expect(tokens[3 + 0x41]).toBe("<0x41>");
    expect(types[3 + 0x41]).toBe(6);
    expect(info.tensorInfo?.find((t) => t.name === "blk.0.attn_q.weight")?.ggmlType).toBe(1); // F16
  });

  it("builds a vocabulary of specials, 256 bytes and text pieces, without duplicates", () => {
    const v = tinyVocab(2000);
    expect(v).toHaveLength(2000);
    expect(new Set(v).size).toBe(2000);
    expect(v.slice(0, 3)).toEqual(["<unk>", "<s>", "</s>"]);
    expect(v[259]).toBe("\u2581");
  });

  it("converts to half precision with round-to-nearest-even", () => {
    expect(toHalf(1)).toBe(0x3c00);
    expect(toHalf(-2)).toBe(0xc000);
    expect(toHalf(65504)).toBe(0x7bff);
    expect(toHalf(1e6)).toBe(0x7c00);
    expect(toHalf(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(toHalf(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(toHalf(1 + 3 * 2 ** -11)).toBe(0x3c02);
  });

  it("rejects impossible shapes with a clear error", () => {
    expect(() => resolveTinyOptions({ embd: 63 })).toThrow(/multiple of heads/);
    expect(() => resolveTinyOptions({ vocab: 10 })).toThrow(/vocab/);
  });

  it("ensureTinyModel reuses a matching file and rewrites a stale one", async () => {
    const dir = tempDir();
    const path = await ensureTinyModel(dir, { name: "tiny" });
    expect(path).toBe(join(dir, "tiny.gguf"));
    const first = statSync(path).mtimeMs;
    expect(await ensureTinyModel(dir, { name: "tiny" })).toBe(path);
    expect(statSync(path).mtimeMs).toBe(first);
    writeFileSync(path, "garbage");
    // the sidecar still matches: only options decide reuse, so a changed seed is needed to rewrite
    await ensureTinyModel(dir, { name: "tiny", seed: 2 });
    expect(sha(readFileSync(path))).toBe(sha(encodeTinyGguf({ name: "tiny", seed: 2 })));
    expect(JSON.parse(readFileSync(`${path}.params.json`, "utf8")).options.seed).toBe(2);
  });
});
