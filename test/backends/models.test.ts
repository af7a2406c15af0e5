import { copyFileSync, readFileSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  advertisedNames,
  checkGgufFile,
  readModelMap,
  resolveModel,
  scanModels,
} from "../../src/backends/llama/models.js";
import { BackendError } from "../../src/backends/types.js";
import { tempDir, tinyPath } from "../support/backends.js";

function dirWith(names: string[]): string {
  const dir = tempDir("models-");
  for (const n of names) copyFileSync(tinyPath, join(dir, n));
  return dir;
}

const resolveIn = (dir: string, name: string) => {
  const { candidates } = scanModels({ modelsDir: dir });
  return resolveModel(name, candidates)?.name ?? null;
};

describe("model resolution", () => {
  it("NAME.gguf serves NAME, and nothing else is substituted", () => {
    const dir = dirWith(["tiny.gguf", "other.gguf"]);
    expect(resolveIn(dir, "tiny")).toBe("tiny");
    expect(resolveIn(dir, "tin")).toBeNull();
    expect(resolveIn(dir, "tiny.gguf")).toBeNull();
    expect(resolveIn(dir, "llama3")).toBeNull();
  });

  it("NAME:TAG is served by NAME-TAG.gguf, or by NAME.gguf when it is the only match", () => {
    const only = dirWith(["llama3.gguf"]);
    expect(resolveIn(only, "llama3:latest")).toBe("llama3");
    expect(resolveIn(only, "llama3:8b")).toBe("llama3");

    const both = dirWith(["llama3.gguf", "llama3-8b.gguf", "llama3-70b.gguf"]);
    expect(resolveIn(both, "llama3:8b")).toBe("llama3-8b");
    expect(resolveIn(both, "llama3:70b")).toBe("llama3-70b");
    // NAME.gguf is not the only file for llama3: an unknown tag must not fall back to it
    expect(resolveIn(both, "llama3:1b")).toBeNull();
    expect(resolveIn(both, "llama3")).toBe("llama3");
    expect(resolveIn(both, "llama3:")).toBeNull();
  });

  it("without the plain fallback, only exact names and NAME-TAG.gguf resolve", () => {
    const { candidates } = scanModels({ modelsDir: dirWith(["llama3.gguf", "qwen-7b.gguf"]) });
    const exact = (n: string) => resolveModel(n, candidates, { plainFallback: false })?.name ?? null;
    expect(exact("llama3")).toBe("llama3");
    expect(exact("llama3:70b")).toBeNull();
    expect(exact("llama3:latest")).toBeNull();
    expect(exact("qwen:7b")).toBe("qwen-7b");
    expect(resolveModel("llama3:70b", candidates)?.name).toBe("llama3");
  });

  it("advertises file names plus the tag spelling that resolves back to the same file", () => {
    const dir = dirWith(["tiny.gguf", "qwen2.5-coder-7b.gguf"]);
    const { candidates } = scanModels({ modelsDir: dir });
    expect(advertisedNames(candidates).sort()).toEqual(["qwen2.5-coder-7b", "qwen2.5-coder:7b", "tiny"]);
    expect(resolveModel("qwen2.5-coder:7b", candidates)?.name).toBe("qwen2.5-coder-7b");
  });

  it("offers only readable GGUF files", () => {
    const dir = dirWith(["good.gguf"]);
    writeFileSync(join(dir, "text.gguf"), "hello, not a model");
    writeFileSync(join(dir, "empty.gguf"), "");
    writeFileSync(join(dir, "readme.txt"), "x");
    const { candidates, skipped } = scanModels({ modelsDir: dir });
    expect(candidates.map((c) => c.name)).toEqual(["good"]);
    expect(skipped.map((s) => [s.name, s.reason]).sort()).toEqual([
      ["empty", "not a GGUF file"],
      ["text", "not a GGUF file"],
    ]);
  });

  it("reads a model map: relative paths, objects, hf: URIs, and the map wins over the directory", () => {
    const dir = dirWith(["tiny.gguf", "a.gguf"]);
    const mapFile = join(dir, "map.json");
    writeFileSync(
      mapFile,
      JSON.stringify({
        "my-model:v1": "a.gguf",
        tiny: { path: join(dir, "a.gguf") },
        remote: "hf:user/repo/model.Q4_K_M.gguf",
        missing: "nope.gguf",
      }),
    );
    const entries = readModelMap(mapFile);
    expect(entries.find((e) => e.name === "remote")).toEqual({
      name: "remote",
      path: null,
      uri: "hf:user/repo/model.Q4_K_M.gguf",
    });
    const { candidates, skipped } = scanModels({ modelsDir: dir, mapEntries: entries });
    expect(resolveModel("my-model:v1", candidates)?.path).toBe(join(dir, "a.gguf"));
    expect(resolveModel("tiny", candidates)?.path).toBe(join(dir, "a.gguf"));
    expect(skipped.map((s) => s.name)).toEqual(["missing"]);
  });

  it("rejects a malformed model map with a message that says where", () => {
    const dir = tempDir();
    const bad = (content: string) => {
      const f = join(dir, "m.json");
      writeFileSync(f, content);
      return () => readModelMap(f);
    };
    expect(bad("{not json")).toThrow(/cannot read JSON/);
    expect(bad(JSON.stringify({ x: 5 }))).toThrow(BackendError);
    expect(bad(JSON.stringify({ "bad name": "a.gguf" }))).toThrow(/invalid/);
    expect(bad(JSON.stringify({ x: { uri: "https://example.com/a.gguf" } }))).toThrow(/invalid/);
    expect(() => readModelMap(join(dir, "absent.json"))).toThrow(/cannot read/);
  });

  it("offers only complete files: a truncated one is skipped with how much of it is there", () => {
    const dir = dirWith(["good.gguf"]);
    const bytes = readFileSync(tinyPath);
    writeFileSync(join(dir, "cut.gguf"), bytes.subarray(0, bytes.length - 1));
    writeFileSync(join(dir, "half.gguf"), bytes.subarray(0, bytes.length >> 1));
    writeFileSync(join(dir, "head.gguf"), bytes.subarray(0, 100));
    const { candidates, skipped } = scanModels({ modelsDir: dir });
    expect(candidates.map((c) => [c.name, c.sizeBytes])).toEqual([["good", bytes.length]]);
    const why = Object.fromEntries(skipped.map((s) => [s.name, s.reason]));
    expect(why["cut"]).toMatch(
      new RegExp(
        `^truncated: 0\\.5 MB of 0\\.5 MB \\(${bytes.length - 1} of ${bytes.length} bytes\\); .*download it again`,
      ),
    );
    expect(why["half"]).toMatch(/^truncated: 0\.2 MB of 0\.5 MB/);
    expect(why["head"]).toMatch(/^truncated: the GGUF header runs past the end of the file/);
    expect(skipped.every((s) => s.origin === "dir")).toBe(true);
  });

  it("caches a file's check by its identity (device, inode, size, mtime, ctime): rescans re-read nothing", () => {
    const dir = dirWith(["m.gguf"]);
    const p = join(dir, "m.gguf");
    const t = 1_700_000_000; // whole seconds: utimes then restores the mtime exactly
    utimesSync(p, t, t);
    const first = checkGgufFile(p);
    expect(first).toMatchObject({ ok: true, fileId: expect.any(String) });
    expect(checkGgufFile(p)).toBe(first); // nothing changed: the cached answer, not a new read
    // The bytes rewritten in place and the mtime put back (cp --preserve, touch -r): the ctime
    // still moved, so the file is checked again.
    writeFileSync(p, Buffer.alloc(statSync(p).size), { flag: "r+" });
    utimesSync(p, t, t);
    expect(checkGgufFile(p)).toEqual({ ok: false, reason: "not a GGUF file" });
  });

  it("a hidden file (one being written beside its final name) is never offered", () => {
    const dir = dirWith(["m.gguf"]);
    copyFileSync(join(dir, "m.gguf"), join(dir, ".m2.gguf"));
    expect(scanModels({ modelsDir: dir }).candidates.map((c) => c.name)).toEqual(["m"]);
  });
});
