// The ops endpoint's drain control: only this host may drain or undrain a card (loopback, also as
// IPv4-mapped); an unknown card is a 404 with the reason; a miner without cards says so.
import { networkInterfaces } from "node:os";
import { afterEach, describe, expect, it } from "vitest";
import { isLoopback, type OpsServer, startOpsServer } from "../../src/ops/server.js";

let server: OpsServer | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
});

const asked: string[] = [];
const source = (withControl: boolean) => ({
  contentType: "text/plain",
  metrics: async () => "",
  health: () => ({ live: true, ready: true, reasons: [] }),
  status: () => ({ verdict: "fine" }),
  ...(withControl
    ? {
        control: (action: "drain" | "undrain", id: string) => {
          if (id !== "2")
            throw Object.assign(new Error(`no worker or GPU "${id}" on this host`), { status: 404 });
          asked.push(`${action} ${id}`);
          return { minerId: "host-gpu2", message: `host-gpu2 ${action}ed` };
        },
      }
    : {}),
});

describe("drain control on the ops endpoint", () => {
  it("tells loopback from the rest", () => {
    for (const a of ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"]) expect(isLoopback(a)).toBe(true);
    for (const a of ["10.0.0.1", "::ffff:10.0.0.1", "fe80::1", "128.0.0.1", "", undefined])
      expect(isLoopback(a)).toBe(false);
  });

  it("POST /drain/ID from this host reaches the control; unknown IDs and GET are refused", async () => {
    server = await startOpsServer("127.0.0.1", 0, source(true));
    const ok = await fetch(`${server.url}/drain/2`, { method: "POST" });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ ok: true, minerId: "host-gpu2", message: "host-gpu2 drained" });
    const unknown = await fetch(`${server.url}/undrain/7`, { method: "POST" });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({ error: 'no worker or GPU "7" on this host' });
    expect((await fetch(`${server.url}/drain/2`)).status).toBe(404); // GET drains nothing
    expect(asked).toEqual(["drain 2"]);
    expect(await (await fetch(`${server.url}/status`)).json()).toEqual({ verdict: "fine" });
  });

  it("a miner without cards to drain says so", async () => {
    server = await startOpsServer("127.0.0.1", 0, source(false));
    const r = await fetch(`${server.url}/drain/2`, { method: "POST" });
    expect(r.status).toBe(404);
    expect(((await r.json()) as { error: string }).error).toMatch(
      /no GPU to drain \(a CPU host or --gpus none\)/,
    );
  });

  it("refuses a drain from another address of this machine (when it has one)", async (ctx) => {
    const other = Object.values(networkInterfaces())
      .flat()
      .find((i) => i && i.family === "IPv4" && !i.internal);
    if (!other) return ctx.skip();
    server = await startOpsServer("0.0.0.0", 0, source(true));
    const r = await fetch(`http://${other.address}:${server.port}/drain/2`, { method: "POST" });
    expect(r.status).toBe(403);
    expect(await r.json()).toEqual({ error: "drain is accepted from this host only" });
  });
});
