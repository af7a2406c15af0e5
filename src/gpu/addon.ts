// Finds and loads the NVML addon: env AITBC_NVML_ADDON, then prebuilds/<platform>-<arch>/, then
// build/Release/. A binary that fails to load, has another ABI or a packed layout lacking a field
// the decoder needs is skipped with its reason.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { NvmlAddon } from "../../binding.js";
import { packedDecoder, type Unpack } from "./packed.js";

// src/gpu/ and dist/gpu/ both sit two levels below the package root.
const packageRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export type AddonLoad =
  | {
      ok: true;
      addon: NvmlAddon;
      path: string;
      /** Decoder built for this addon's packed layout. */
      unpack: Unpack;
    }
  | { ok: false; reason: string };

/** The NVML library to load: env AITBC_NVML_LIBRARY, else the driver's soname (dlopen search). */
export function defaultNvmlLibrary(env: NodeJS.ProcessEnv = process.env): string {
  return env["AITBC_NVML_LIBRARY"] || "libnvidia-ml.so.1";
}

export function addonCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  const list: string[] = [];
  const forced = env["AITBC_NVML_ADDON"];
  if (forced) list.push(forced);
  list.push(join(packageRoot, "prebuilds", `${process.platform}-${process.arch}`, "aitbc_nvml.node"));
  list.push(join(packageRoot, "build", "Release", "aitbc_nvml.node"));
  return list;
}

function isAddon(m: unknown): m is NvmlAddon {
  if (typeof m !== "object" || m === null) return false;
  const o = m as Record<string, unknown>;
  return (
    o["abiVersion"] === 2 &&
    typeof o["open"] === "function" &&
    typeof o["snapshotPacked"] === "function" &&
    typeof o["snapshotPackedAsync"] === "function" &&
    Array.isArray(o["packedFields"]) &&
    Array.isArray(o["packedStrings"]) &&
    typeof o["close"] === "function"
  );
}

let cached: AddonLoad | undefined;

export function loadAddon(env: NodeJS.ProcessEnv = process.env): AddonLoad {
  if (cached?.ok) return cached;
  const require = createRequire(import.meta.url);
  const problems: string[] = [];
  for (const path of addonCandidates(env)) {
    if (!existsSync(path)) {
      problems.push(`${path}: not found`);
      continue;
    }
    try {
      const m: unknown = require(path);
      if (!isAddon(m)) {
        problems.push(`${path}: not a compatible aitbc_nvml addon (ABI 2)`);
        continue;
      }
      cached = { ok: true, addon: m, path, unpack: packedDecoder(m) };
      return cached;
    } catch (err) {
      problems.push(`${path}: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  cached = { ok: false, reason: `NVML addon not loadable (${problems.join("; ")})` };
  return cached;
}
