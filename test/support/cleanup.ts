// What a test starts on loopback (a coordinator, a fault proxy, a server) is closed after it,
// whatever its outcome, last started first: `coordinator = closeLater(await start())`.
import { afterEach } from "vitest";

interface Closable {
  close(): Promise<unknown>;
}

/** Registers the afterEach; returns the function that hands a started thing over to it. */
export function closeAfterEach(): <T extends Closable>(thing: T) => T {
  const open: Closable[] = [];
  afterEach(async () => {
    for (const thing of open.splice(0).reverse()) await thing.close();
  });
  return (thing) => {
    open.push(thing);
    return thing;
  };
}
