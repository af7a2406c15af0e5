// Job constraints against a miner's registered capabilities (docs/protocols.md), as the reference
// coordinator matches them. A constraint the miner says nothing about does not match.

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

export function matchesConstraints(
  constraints: Obj,
  capabilities: unknown,
  minerRegion: string | null,
): boolean {
  const caps: Obj = isObj(capabilities) ? capabilities : {};
  const gpus = Array.isArray(caps["gpus"]) ? caps["gpus"].filter(isObj) : [];
  const models = Array.isArray(caps["models"])
    ? caps["models"].filter((m): m is string => typeof m === "string")
    : Array.isArray(capabilities)
      ? capabilities.filter((m): m is string => typeof m === "string")
      : [];

  const gpu = constraints["gpu"];
  if (typeof gpu === "string" && !gpus.some((g) => g["name"] === gpu)) return false;

  const minVram = constraints["min_vram_gb"];
  if (typeof minVram === "number") {
    const ok = gpus.some((g) => typeof g["memory_mb"] === "number" && g["memory_mb"] >= minVram * 1024);
    if (!ok) return false;
  }

  const cuda = constraints["cuda"];
  if (typeof cuda === "string" && !(typeof caps["cuda"] === "string" && caps["cuda"].includes(cuda)))
    return false;

  const wanted = constraints["models"];
  if (Array.isArray(wanted) && !wanted.every((m) => typeof m === "string" && models.includes(m)))
    return false;

  const maxPrice = constraints["max_price"];
  if (typeof maxPrice === "number" && typeof caps["price"] === "number" && caps["price"] > maxPrice)
    return false;

  const region = constraints["region"];
  if (typeof region === "string") {
    const have = minerRegion ?? (typeof caps["region"] === "string" ? caps["region"] : null);
    if (have !== region) return false;
  }
  return true;
}
