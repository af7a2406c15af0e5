// Job constraints against a miner's registered capabilities (docs/protocols.md), as the reference
// coordinator matches them. A constraint the miner says nothing about does not match (a
// max_price against a miner with no price included, as upstream).

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** Python's Decimal(str(v)) of a JSON value: a finite number or numeric string, else null. */
function decimalOf(v: unknown): number | null {
  if (typeof v === "number") return Number.isFinite(v) ? v : null;
  if (typeof v !== "string" || !/^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/.test(v)) return null;
  return Number(v);
}

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

  // Upstream (JobService._satisfies_constraints): with a max_price, a miner that advertises no
  // price, or one that is not a number, never matches; a price above it does not either.
  const maxPrice = decimalOf(constraints["max_price"]);
  if (constraints["max_price"] !== undefined && constraints["max_price"] !== null) {
    const price = decimalOf(caps["price"]);
    if (maxPrice === null || price === null || price > maxPrice) return false;
  }

  const region = constraints["region"];
  if (typeof region === "string" && region !== "") {
    const have = minerRegion ?? (typeof caps["region"] === "string" ? caps["region"] : null);
    if (have !== region) return false;
  }
  return true;
}
