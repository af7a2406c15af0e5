// Prices over real HTTP, in both modes of the local coordinator: the miner's client advertises
// capabilities.price and sends metrics.unit_price with each result; max_price constraints match
// against the advertised price as upstream matches them (no price: never); the coordinator bills
// units x unit price; its earnings and trust-score routes answer as upstream's do.
import { fetch } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { startLocalCoordinator } from "../../src/local-coordinator/index.js";
import { generateKeyPair, signPayload } from "../../src/receipts/index.js";
import { API_KEY, caps, client, completed } from "../support/coordinator.js";

type Obj = Record<string, unknown>;
const key = generateKeyPair();
let coord: LocalCoordinator | null = null;
afterEach(async () => {
  await coord?.close();
  coord = null;
});

async function start(upstreamQuirks: boolean): Promise<LocalCoordinator> {
  coord = await startLocalCoordinator({
    upstreamQuirks,
    apiKeys: [API_KEY],
    signReceipt: (payload) => ({ ...payload, signature: signPayload(payload, key) }),
  });
  return coord;
}

async function call(c: LocalCoordinator, method: string, path: string, miner: string | null, auth = true) {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (auth) headers["x-api-key"] = API_KEY;
  if (miner) headers["x-miner-id"] = miner;
  const r = await fetch(`${c.url}${path}`, { method, headers, body: method === "POST" ? "{}" : undefined });
  const text = await r.text();
  return { status: r.status, json: (text ? JSON.parse(text) : null) as Obj | null };
}

describe.each([
  ["reference", false],
  ["upstream", true],
])("prices (%s mode)", (_mode, upstream) => {
  it("advertises the price at register and matches max_price against it as upstream does", async () => {
    const c = await start(upstream);
    const priced = client(c.url, { minerId: "priced", unitPrice: 0.05 });
    const unpriced = client(c.url, { minerId: "unpriced" });
    await priced.register({ ...caps(), price: 0.05 }, 4);
    await unpriced.register(caps(), 4);
    expect((c.miners().find((m) => m.minerId === "priced")!.capabilities as Obj)["price"]).toBe(0.05);

    const payload = { model: "tiny", prompt: "p" };
    const cheap = c.enqueue({ payload, constraints: { max_price: 0.04 } });
    const exact = c.enqueue({ payload, constraints: { max_price: 0.05 } });
    const asText = c.enqueue({ payload, constraints: { max_price: "0.06" } });
    // A miner without a price matches no job that has a max_price (upstream: price None -> no match).
    expect(await unpriced.poll(0)).toBeNull();
    const got = [await priced.poll(0), await priced.poll(0), await priced.poll(0)].map(
      (j) => j?.jobId ?? null,
    );
    expect(got.slice(0, 2).sort()).toEqual([exact, asText].sort());
    expect(got[2]).toBeNull();
    expect(c.job(cheap)!.state).toBe("QUEUED");
    // Without a max_price the unpriced miner is served.
    const free = c.enqueue({ payload });
    expect((await unpriced.poll(0))?.jobId).toBe(free);
    await priced.close();
    await unpriced.close();
  });

  it("sends unit_price with the result, and the coordinator bills units x unit_price", async () => {
    const c = await start(upstream);
    const miner = client(c.url, { minerId: "priced", unitPrice: 0.05 });
    const plain = client(c.url, { minerId: "plain" });
    await miner.register({ ...caps(), price: 0.05 }, 2);
    await plain.register(caps(), 2);
    const a = c.enqueue({ payload: { model: "tiny", prompt: "a" } });
    expect((await miner.poll(0))?.jobId).toBe(a);
    const ack = await miner.submit({
      ...completed(a),
      metrics: { ...completed(a).metrics, duration_ms: 12_345 },
    });
    expect(ack.billed).toEqual({ units: 12.345, unitType: "gpu_seconds", unitPrice: 0.05 });
    const metrics = c.job(a)!.metrics as Obj;
    expect(metrics).toMatchObject({ units: 12.345, unit_type: "gpu_seconds", unit_price: 0.05 });
    expect(metrics).not.toHaveProperty("price");
    const receipt = JSON.parse(ack.coordinatorReceiptText!) as Obj;
    expect(receipt).toMatchObject({
      units: 12.345,
      unit_type: "gpu_seconds",
      unit_price: 0.05,
      price: 0.61725,
    });

    // A client without a price sends none: the coordinator bills its 0.02 default.
    const b = c.enqueue({ payload: { model: "tiny", prompt: "b" } });
    expect((await plain.poll(0))?.jobId).toBe(b);
    const plainAck = await plain.submit(completed(b));
    expect((c.job(b)!.metrics as Obj)["unit_price"]).toBeUndefined();
    expect(JSON.parse(plainAck.coordinatorReceiptText!)).toMatchObject({
      units: 0.25,
      unit_price: 0.02,
      price: 0.005,
    });

    // Its own view: earnings (reference: the signed prices; upstream: escrow only, so 0) and trust score.
    const earnings = await call(c, "POST", "/v1/miners/priced/earnings", "priced");
    expect(earnings.status).toBe(200);
    expect(earnings.json).toMatchObject({
      miner_id: "priced",
      completed_jobs: 1,
      total_earnings: upstream ? 0 : 0.61725,
      currency: "AITBC",
    });
    const trust = await call(c, "GET", "/v1/reputation/trust-score/priced", null, false);
    expect(trust.status).toBe(200);
    expect(trust.json).toMatchObject({ agent_id: "priced", composite_score: 1 });
    expect((await call(c, "POST", "/v1/miners/priced/earnings", "priced", false)).status).toBe(401);
    await miner.close();
    await plain.close();
  });
});
