// Which shared libraries this process could load, asked of the dynamic loader itself through the
// addon (dlopen, then dlclose): the same search node-llama-cpp's GPU backend meets at load time.
import type { LibraryProbe } from "../../binding.js";
import { loadAddon } from "./addon.js";

export type { LibraryProbe };

/** One probe per name, in order; null when the addon (or this function of it) is unavailable. */
export async function probeLibraries(names: readonly string[]): Promise<LibraryProbe[] | null> {
  const load = loadAddon();
  if (!load.ok || typeof load.addon.probeLibraries !== "function") return null;
  const out = await load.addon.probeLibraries([...names]);
  if (!Array.isArray(out) || out.length !== names.length) return null;
  return out;
}
