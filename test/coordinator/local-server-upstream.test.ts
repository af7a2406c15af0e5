// The local coordinator's upstream mode (`upstreamQuirks`, docs/protocols.md#how-the-upstream-coordinator-behaves), over real HTTP: each
// quirk of the real AITBC coordinator that the miner has to live with.
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";
import { fetch } from "undici";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { CoordinatorEvent, LocalCoordinator } from "../../src/local-coordinator/index.js";
import { startLocalCoordinator } from "../../src/local-coordinator/index.js";
import { generateKeyPair, signPayload } from "../../src/receipts/index.js";
import { API_KEY, caps } from "../support/coordinator.js";

type Obj = Record<string, unknown>;

const key = generateKeyPair();
let coord: LocalCoordinator;
let clock = 1_700_000_000_000;
const events: CoordinatorEvent[] = [];

beforeEach(async () => {
  events.length = 0;
  coord = await startLocalCoordinator({
    upstreamQuirks: true,
    apiKeys: [API_KEY],
    leaseTimeoutMs: 1000, // ignored upstream: there are no leases
    now: () => clock,
    signReceipt: (payload) => ({ ...payload, signature: signPayload(payload, key) }),
    onEvent: (e) => events.push(e),
  });
});
afterEach(async () => {
  await coord.close();
});

async function call(method: string, path: string, miner: string | null, body?: unknown) {
  const headers: Record<string, string> = { "x-api-key": API_KEY, "content-type": "application/json" };
  if (miner) headers["x-miner-id"] = miner;
  const r = await fetch(`${coord.url}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, json: (text ? JSON.parse(text) : null) as Obj | null };
}

const register = (miner: string, concurrency = 1) =>
  call("POST", "/v1/miners/register", miner, { capabilities: caps(), concurrency });
const poll = (miner: string) => call("POST", "/v1/miners/poll", miner, { max_wait_seconds: 0 });
const heartbeat = (miner: string, inflight: number) =>
  call("POST", "/v1/miners/heartbeat", miner, { inflight, status: "ONLINE", metadata: {} });
const fail = (miner: string, jobId: string, code = "model_not_found") =>
  call("POST", `/v1/miners/${jobId}/fail`, miner, {
    error_code: code,
    error_message: `${code}!`,
    metrics: {},
  });
const result = (miner: string, jobId: string) =>
  call("POST", `/v1/miners/${jobId}/result`, miner, {
    result: { status: "completed", output: "hi", execution_time: 0.5, model: "tiny" },
    metrics: { duration_ms: 500, units: 5, unit_type: "tokens" },
  });
const enqueue = (n: number) =>
  Array.from({ length: n }, (_, i) => coord.enqueue({ payload: { model: "tiny", prompt: `p${i}` } }));

describe("local coordinator, upstream quirks", () => {
  it("serves /health but not /v1/health", async () => {
    expect((await call("GET", "/health", null)).status).toBe(200);
    expect((await call("GET", "/v1/health", null)).status).toBe(404);
  });

  it("answers a poll from an unknown miner with 500 and a heartbeat with 404", async () => {
    const p = await poll("ghost");
    expect(p.status).toBe(500);
    expect(p.json).toMatchObject({ error: { code: "INTERNAL_SERVER_ERROR", status: 500 } });
    expect((await heartbeat("ghost", 0)).status).toBe(404);
  });

  it("/fail keeps the slot until a heartbeat sets inflight; register resets it", async () => {
    const [a, b, c] = enqueue(3);
    await register("m1");
    expect((await poll("m1")).json).toMatchObject({ job_id: a });
    expect((await fail("m1", a!)).status).toBe(200);
    expect((await poll("m1")).status).toBe(204); // inflight is still 1 of 1
    expect((await heartbeat("m1", 0)).status).toBe(200);
    expect((await poll("m1")).json).toMatchObject({ job_id: b });
    // b is RUNNING and counted; registering again zeroes the counter without touching b.
    expect((await poll("m1")).status).toBe(204);
    await register("m1");
    expect((await poll("m1")).json).toMatchObject({ job_id: c });
    expect(coord.job(b!)?.state).toBe("RUNNING");
  });

  it("a result releases the slot (any miner's result releases that miner's counter)", async () => {
    const [a, b] = enqueue(2);
    await register("m1");
    await poll("m1");
    expect((await result("m1", a!)).status).toBe(200);
    expect((await poll("m1")).json).toMatchObject({ job_id: b });
  });

  it("failures are terminal whatever the code; only the message is kept", async () => {
    const [a, b] = enqueue(2);
    await register("m1", 2);
    await poll("m1");
    await poll("m1");
    await fail("m1", a!, "shutting_down");
    await fail("m1", b!, "miner_restarted");
    for (const id of [a!, b!]) {
      const j = coord.job(id)!;
      expect(j.state).toBe("FAILED");
      expect(j.error?.code).toBeNull();
    }
    expect(coord.job(a!)?.error?.message).toBe("shutting_down!");
    expect(events.filter((e) => e.type === "failed").every((e) => e.type === "failed" && !e.requeued)).toBe(
      true,
    );
    expect(coord.stats().requeued).toBe(0);
  });

  it("accepts a result again, from any miner, for a completed or failed job, each with a new receipt", async () => {
    const [a, b] = enqueue(2);
    await register("m1", 2);
    await register("m2");
    await poll("m1");
    await poll("m1");
    const first = await result("m1", a!);
    const again = await result("m2", a!);
    expect(first.status).toBe(200);
    expect(again.status).toBe(200);
    const r1 = first.json!["receipt"] as Obj;
    const r2 = again.json!["receipt"] as Obj;
    expect(r1["receipt_id"]).not.toBe(r2["receipt_id"]);
    expect(r2["provider"]).toBe("m2");
    expect(coord.job(a!)).toMatchObject({ state: "COMPLETED", submissions: 2, duplicateSubmissions: 0 });
    await fail("m1", b!);
    expect((await result("m1", b!)).status).toBe(200);
    expect(coord.job(b!)).toMatchObject({ state: "COMPLETED", error: null });
    expect(coord.stats().byStatus["409"]).toBeUndefined();
  });

  it("receipt: signed, then zk_status/tee_status added; model only in metadata.job_payload", async () => {
    const [a] = enqueue(1);
    await register("m1");
    await poll("m1");
    const receipt = (await result("m1", a!)).json!["receipt"] as Obj;
    expect(receipt).toMatchObject({
      version: "1.0",
      job_id: a,
      provider: "m1",
      status: "COMPLETED",
      units: 5,
      unit_type: "tokens",
      unit_price: 0.02,
      price: 0.1,
      zk_status: "not_required",
      tee_status: "not_required",
      metadata: { job_payload: { model: "tiny", prompt: "p0" }, metrics: { duration_ms: 5000 } },
    });
    expect(receipt).not.toHaveProperty("model");
    expect(receipt["receipt_id"]).toMatch(/^[0-9a-f]{32}$/);
    expect(receipt["started_at"]).toBe((receipt["completed_at"] as number) - 5);
    // The signature covers everything but the post-signing fields.
    const { signature, zk_status: _z, tee_status: _t, ...signed } = receipt;
    expect(signPayload(signed, key)).toEqual(signature);
  });

  it("post-signing fields are appended to a raw-text receipt too", async () => {
    await coord.close();
    coord = await startLocalCoordinator({
      upstreamQuirks: true,
      apiKeys: [API_KEY],
      signReceipt: (payload) => JSON.stringify({ ...payload, signature: signPayload(payload, key) }),
    });
    const [a] = enqueue(1);
    await register("m1");
    await poll("m1");
    const receipt = (await result("m1", a!)).json!["receipt"] as Obj;
    expect(receipt).toMatchObject({ zk_status: "not_required", tee_status: "not_required" });
    expect(coord.job(a!)?.coordinatorReceipt).toMatchObject({ zk_status: "not_required" });
  });

  it("has no lease: a RUNNING job of a vanished miner stays RUNNING, even when it registers again", async () => {
    const [a, b] = enqueue(2);
    await register("m1");
    await poll("m1");
    clock += 3_600_000;
    expect(coord.sweepLeases()).toBe(0);
    await register("m2");
    expect((await poll("m2")).json).toMatchObject({ job_id: b });
    await register("m1"); // the same miner id comes back: its job is not requeued
    expect(coord.job(a!)).toMatchObject({ state: "RUNNING", minerId: "m1", attempts: 1 });
    expect(coord.stats()).toMatchObject({ leaseExpired: 0, requeued: 0 });
    expect((await result("m1", a!)).status).toBe(200);
  });

  it("deregister marks the miner offline and leaves its RUNNING jobs alone", async () => {
    const [a] = enqueue(1);
    await register("m1");
    await poll("m1");
    const d = await call("DELETE", "/v1/miners/m1", "m1");
    expect(d).toMatchObject({ status: 200, json: { miner_id: "m1", status: "deregistered" } });
    expect(coord.miners()[0]).toMatchObject({ minerId: "m1", status: "OFFLINE" });
    expect(coord.job(a!)?.state).toBe("RUNNING");
    expect((await heartbeat("m1", 0)).status).toBe(200); // still known
  });

  it("the default mode keeps the reference semantics", async () => {
    const ref = await startLocalCoordinator({ apiKeys: [API_KEY] });
    try {
      const r = await fetch(`${ref.url}/v1/health`);
      expect(r.status).toBe(200);
      await r.text();
      const p = await fetch(`${ref.url}/v1/miners/poll`, {
        method: "POST",
        headers: { "x-api-key": API_KEY, "x-miner-id": "ghost", "content-type": "application/json" },
        body: "{}",
      });
      expect(p.status).toBe(404);
      await p.text();
    } finally {
      await ref.close();
    }
  });
});

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const dist = (p: string) => join(root, "dist", ...p.split("/"));
const COMMAND = `
import { Command } from "commander";
import { register } from ${JSON.stringify(pathToFileURL(dist("commands/coordinator.js")).href)};
const program = new Command();
register(program);
await program.parseAsync(process.argv.slice(1), { from: "user" });
`;

/** Start a coordinator process, read the URL from its first stdout line, check both health paths. */
async function healthOf(args: string[]): Promise<{ health: number; v1Health: number }> {
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], cwd: root });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  try {
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout }).once("line", resolve);
      void exited.then((code) => reject(new Error(`exited ${code}: ${stderr}`)));
    });
    const url = line.startsWith("{") ? (JSON.parse(line) as { url: string }).url : line;
    const status = async (path: string) => {
      const r = await fetch(`${url}${path}`);
      await r.text();
      return r.status;
    };
    return { health: await status("/health"), v1Health: await status("/v1/health") };
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
}

describe("--upstream-quirks", () => {
  it("switches the child-process entry (local-coordinator/main) to upstream mode", async () => {
    const entry = dist("local-coordinator/main.js");
    expect(await healthOf([entry, "--upstream-quirks"])).toEqual({ health: 200, v1Health: 404 });
    expect(await healthOf([entry])).toEqual({ health: 200, v1Health: 200 });
  });

  it("switches the `coordinator` command to upstream mode", async () => {
    const args = ["--input-type=module", "-e", COMMAND, "--", "coordinator", "--port", "0"];
    expect(await healthOf([...args, "--upstream-quirks", "--log-level", "silent"])).toEqual({
      health: 200,
      v1Health: 404,
    });
  });
});
