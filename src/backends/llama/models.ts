// Which GGUF file serves which job model name (docs/models.md):
// - `NAME.gguf` in the models directory serves `NAME`;
// - an Ollama-style tag `NAME:TAG` is served by `NAME-TAG.gguf`, or by `NAME.gguf` when that is the
//   only file for NAME (no other `NAME-*.gguf`);
// - a model map (JSON) maps any other name to a path (relative to the map file) or an `hf:` URI.
// Only complete GGUF files are offered: readable, a valid v2/v3 header, and every tensor's data
// inside the file (gguf-header.ts); the llama backend preflights them before loading in-process.
import { type BigIntStats, readdirSync, readFileSync, statSync } from "node:fs";
import { stat } from "node:fs/promises";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { z } from "zod";
import { BackendError } from "../types.js";
import { readGgufHeader } from "./gguf-header.js";

export interface ModelCandidate {
  /** Name advertised to the coordinator. */
  name: string;
  /** Local file (absent for an `hf:` entry not yet downloaded). */
  path: string | null;
  /** The `hf:` URI of a map entry, when it has one. */
  uri: string | null;
  sizeBytes: number | null;
  /** Where the entry came from: "dir" or "map". */
  origin: "dir" | "map";
  /** Why the file's size could not be checked against its header (preflight still runs). */
  sizeUnchecked?: string | undefined;
  /** Which file this was when checked (fileIdOf): a replaced or rewritten file has another. */
  fileId?: string | undefined;
}

/**
 * A file's identity: device, inode, size, and mtime and ctime in nanoseconds. Writing into a file
 * changes its mtime and ctime (ctime even under `cp --preserve` or `touch -r`), a rename over it
 * its inode: each change gives another id, so a model loaded from one id is known stale.
 */
export function fileIdOfStats(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

/** The identity of the file at `path` now, or null when there is none (deleted, unreadable). */
export async function fileIdOf(path: string): Promise<string | null> {
  try {
    const st = await stat(path, { bigint: true });
    return st.isFile() ? fileIdOfStats(st) : null;
  } catch {
    return null;
  }
}

const nameSchema = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[\x21-\x7e]+$/, "model names are printable ASCII without spaces");
const targetSchema = z.string().min(1).max(4096);
const entrySchema = z.union([
  targetSchema,
  z.object({ path: targetSchema }).strict(),
  z.object({ uri: targetSchema.regex(/^hf:/, "uri must start with hf:") }).strict(),
]);
/** `{"name": "path-or-hf-uri"}`, `{"name": {"path": ...}}`, or the same under a "models" key. */
const mapSchema = z.union([
  z.object({ models: z.record(nameSchema, entrySchema) }).strict(),
  z.record(nameSchema, entrySchema),
]);

export interface ModelMapEntry {
  name: string;
  path: string | null;
  uri: string | null;
}

/** Read and validate a model map file; paths are resolved against the file's directory. */
export function readModelMap(file: string): ModelMapEntry[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new BackendError(
      "backend_unavailable",
      `model map ${file}: cannot read JSON (${(err as Error).message})`,
      { cause: err },
    );
  }
  const parsed = mapSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? ` at ${issue.path.join(".")}` : "";
    throw new BackendError(
      "backend_unavailable",
      `model map ${file}: invalid${where}: ${issue?.message ?? "bad shape"} ` +
        `(expected {"NAME": "path/to/model.gguf" | "hf:user/repo/file.gguf"})`,
    );
  }
  const record =
    "models" in parsed.data && typeof parsed.data.models === "object" ? parsed.data.models : parsed.data;
  const base = dirname(resolve(file));
  return Object.entries(record as Record<string, z.infer<typeof entrySchema>>).map(([name, e]) => {
    const target = typeof e === "string" ? e : "path" in e ? e.path : e.uri;
    if (target.startsWith("hf:")) return { name, path: null, uri: target };
    return { name, path: isAbsolute(target) ? target : join(base, target), uri: null };
  });
}

export type GgufCheck =
  | { ok: true; sizeBytes: number; sizeUnchecked?: string | undefined; fileId: string }
  | { ok: false; reason: string };

/** Checks by path, valid while the file's identity (fileIdOf) stays the same: rescans re-read nothing. */
const checkCache = new Map<string, { fileId: string; result: GgufCheck }>();
const CHECK_CACHE_MAX = 4096;

/**
 * Whether `path` is a complete GGUF file: a valid header and all tensor data present (a truncated
 * download is refused with "truncated: X MB of Y MB"). Never throws.
 */
export function checkGgufFile(path: string): GgufCheck {
  let st: BigIntStats;
  try {
    st = statSync(path, { bigint: true });
  } catch (err) {
    return { ok: false, reason: (err as NodeJS.ErrnoException).code ?? (err as Error).message };
  }
  if (!st.isFile()) return { ok: false, reason: "not a regular file" };
  const fileId = fileIdOfStats(st);
  const hit = checkCache.get(path);
  if (hit?.fileId === fileId) return hit.result;
  const h = readGgufHeader(path);
  const result: GgufCheck = h.ok
    ? { ok: true, sizeBytes: h.fileBytes, fileId, ...(h.unchecked ? { sizeUnchecked: h.unchecked } : {}) }
    : { ok: false, reason: h.reason };
  checkCache.delete(path);
  if (checkCache.size >= CHECK_CACHE_MAX) checkCache.delete(checkCache.keys().next().value!);
  checkCache.set(path, { fileId, result });
  return result;
}

export interface ScanResult {
  candidates: ModelCandidate[];
  /** Files or entries skipped, with the reason (for one log line each). */
  skipped: { name: string; path: string; reason: string; origin: ModelCandidate["origin"] }[];
}

/** Scan a models directory and a model map into the list of servable names. */
export function scanModels(opts: {
  modelsDir?: string | undefined;
  mapEntries?: ModelMapEntry[];
}): ScanResult {
  const candidates: ModelCandidate[] = [];
  const skipped: ScanResult["skipped"] = [];
  const names = new Set<string>();
  for (const e of opts.mapEntries ?? []) {
    if (e.uri) {
      candidates.push({ name: e.name, path: null, uri: e.uri, sizeBytes: null, origin: "map" });
      names.add(e.name);
      continue;
    }
    const check = checkGgufFile(e.path!);
    if (!check.ok) {
      skipped.push({ name: e.name, path: e.path!, reason: check.reason, origin: "map" });
      continue;
    }
    candidates.push({
      name: e.name,
      path: e.path,
      uri: null,
      sizeBytes: check.sizeBytes,
      origin: "map",
      sizeUnchecked: check.sizeUnchecked,
      fileId: check.fileId,
    });
    names.add(e.name);
  }
  if (opts.modelsDir) {
    let files: string[];
    try {
      // A hidden file is one being written beside its final name (`.NAME.gguf.tmp`, rsync's
      // `.NAME.gguf.XXXXXX`, an editor's copy): never offered, even when it ends in .gguf.
      files = readdirSync(opts.modelsDir).filter((f) => f.endsWith(".gguf") && !f.startsWith("."));
    } catch (err) {
      throw new BackendError(
        "backend_unavailable",
        `models directory ${opts.modelsDir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
        { cause: err },
      );
    }
    for (const file of files.sort()) {
      const name = file.slice(0, -".gguf".length);
      const path = join(opts.modelsDir, file);
      if (name.length === 0 || names.has(name)) continue; // the map wins over a same-named file
      const check = checkGgufFile(path);
      if (!check.ok) {
        skipped.push({ name, path, reason: check.reason, origin: "dir" });
        continue;
      }
      candidates.push({
        name,
        path,
        uri: null,
        sizeBytes: check.sizeBytes,
        origin: "dir",
        sizeUnchecked: check.sizeUnchecked,
        fileId: check.fileId,
      });
      names.add(name);
    }
  }
  return { candidates, skipped };
}

/**
 * The candidate that serves `requested`, or null. Never a different model: only the exact name,
 * or the tag forms the rules above allow. With `plainFallback: false`, `NAME:TAG` is served only
 * by `NAME-TAG.gguf`, not by a lone `NAME.gguf` (an exact match, which the fallback backend prefers
 * in either backend before any such fallback).
 */
export function resolveModel(
  requested: string,
  candidates: readonly ModelCandidate[],
  opts: { plainFallback?: boolean } = {},
): ModelCandidate | null {
  const exact = candidates.find((c) => c.name === requested);
  if (exact) return exact;
  const colon = requested.lastIndexOf(":");
  if (colon <= 0 || colon === requested.length - 1) return null;
  const base = requested.slice(0, colon);
  const tag = requested.slice(colon + 1);
  const dirFiles = candidates.filter((c) => c.origin === "dir");
  const tagged = dirFiles.find((c) => c.name === `${base}-${tag}`);
  if (tagged) return tagged;
  if (opts.plainFallback === false) return null;
  const plain = dirFiles.find((c) => c.name === base);
  if (!plain) return null;
  const variants = dirFiles.filter((c) => c.name.startsWith(`${base}-`));
  return variants.length === 0 ? plain : null;
}

/**
 * Names to advertise: every candidate's name, plus the Ollama tag spelling `NAME:TAG` of a
 * `NAME-TAG.gguf` file (split at the last "-"), which resolveModel maps back to the same file.
 */
export function advertisedNames(candidates: readonly ModelCandidate[]): string[] {
  const out = new Set<string>();
  for (const c of candidates) {
    out.add(c.name);
    const dash = c.name.lastIndexOf("-");
    if (c.origin === "dir" && dash > 0 && dash < c.name.length - 1) {
      const alias = `${c.name.slice(0, dash)}:${c.name.slice(dash + 1)}`;
      if (resolveModel(alias, candidates) === c) out.add(alias);
    }
  }
  return [...out];
}

/** What became of a file that served a candidate before a rescan. */
export interface FileChange {
  path: string;
  /** A name it served (the first, when several did). */
  name: string;
  /** Another file now (rewritten, replaced by a rename), refused by the scan, or gone. */
  kind: "changed" | "refused" | "removed";
}

/** The files of `before` that `after` no longer holds as they were, one entry per path. */
export function fileChanges(
  before: readonly ModelCandidate[],
  after: readonly ModelCandidate[],
  refusedPaths: ReadonlySet<string>,
): FileChange[] {
  const out = new Map<string, FileChange>();
  for (const old of before) {
    if (!old.path || out.has(old.path)) continue;
    const now = after.find((c) => c.path === old.path);
    if (now && now.fileId === old.fileId) continue;
    const kind = now ? "changed" : refusedPaths.has(old.path) ? "refused" : "removed";
    out.set(old.path, { path: old.path, name: old.name, kind });
  }
  return [...out.values()];
}
