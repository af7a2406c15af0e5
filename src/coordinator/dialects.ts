// The dialect table: every coordinator dialect the miner speaks, one row each, with the traits the
// miner reads (src/coordinator/types.ts DialectTraits) and how its client is made. `--protocol`
// accepts exactly these names; nothing else in the miner knows them (docs/extending.md).
import { AitbcClient } from "./aitbc.js";
import { ClaimClient } from "./claim.js";
import type { DialectClient, DialectOptions } from "./dialect.js";
import type { CoordinatorClient, DialectTraits } from "./types.js";

export interface Dialect {
  /** The `--protocol` value; also the `protocol` field of the client's log lines. */
  readonly name: string;
  readonly traits: DialectTraits;
  /** One client for one miner, over the shared HTTP layer the factory built. */
  create(o: DialectOptions): CoordinatorClient & Pick<DialectClient, "secrets">;
}

/** The built-in dialects, default first. */
const BUILT_IN: readonly Dialect[] = [
  {
    name: "aitbc",
    // Upstream ignores max_wait_seconds, but the local coordinator and later versions hold polls.
    traits: { longPoll: true, parallelPolls: true, pollLimit: true, authRequired: true, priced: true },
    create: (o) => new AitbcClient(o),
  },
  {
    name: "claim",
    // A job is listed to every miner, then claimed: parallel polls would claim-race themselves.
    traits: { longPoll: false, parallelPolls: false, pollLimit: false, authRequired: false, priced: false },
    create: (o) => new ClaimClient(o),
  },
];

const table = new Map<string, Dialect>();

/**
 * Add a dialect to the table (the built-in ones are added here at load; a test may add its own).
 * A name is lower-case letters, digits and dashes, and taken once.
 */
export function registerDialect(d: Dialect): void {
  if (!/^[a-z][a-z0-9-]{0,31}$/.test(d.name))
    throw new TypeError(`invalid dialect name ${JSON.stringify(d.name)}`);
  if (table.has(d.name)) throw new TypeError(`dialect ${d.name} is already registered`);
  table.set(d.name, Object.freeze({ ...d, traits: Object.freeze({ ...d.traits }) }));
}

for (const d of BUILT_IN) registerDialect(d);

/** The default `--protocol`. */
export const DEFAULT_DIALECT = BUILT_IN[0]!.name;

export function dialectNames(): string[] {
  return [...table.keys()];
}

export function isDialect(name: unknown): name is string {
  return typeof name === "string" && table.has(name);
}

/** The row of a registered dialect; a TypeError for a name config validation would have refused. */
export function dialect(name: string): Dialect {
  const d = table.get(name);
  if (!d)
    throw new TypeError(
      `unknown coordinator dialect ${JSON.stringify(name)} (known: ${dialectNames().join(", ")})`,
    );
  return d;
}

export function dialectTraits(name: string): DialectTraits {
  return dialect(name).traits;
}
