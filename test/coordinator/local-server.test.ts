// The local coordinator itself: persistence across a SIGKILL, seeded faults, request limits.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { startLocalCoordinator } from "../../src/local-coordinator/index.js";
import { API_KEY, caps, client, completed, rejection } from "../support/coordinator.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const entry = join(root, "dist", "local-coordinator", "main.js");

async function spawnCoordinator(args: string[]): Promise<{ child: ChildProcess; url: string; port: number }> {
  const child = spawn(process.execPath, [entry, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const lines = createInterface({ input: child.stdout! });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once("line", resolve);
    child.once("exit", (code) => reject(new Error(`coordinator exited (${code}): ${stderr}`)));
  });
  const info = JSON.parse(first) as { url: string; port: number };
  return { child, ...info };
}

function kill(child: ChildProcess, signal: NodeJS.Signals): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
    child.once("exit", (code) => resolve(code));
    child.kill(signal);
  });
}

describe("local coordinator", () => {
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    for (const f of cleanups.splice(0).reverse()) await f();
  });

  it("keeps its jobs across a SIGKILL and restart on the same port (state file)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "coord-state-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const stateFile = join(dir, "state.json");
    const args = ["--state-file", stateFile, "--api-key", API_KEY];

    const first = await spawnCoordinator(args);
    cleanups.push(() => kill(first.child, "SIGKILL"));
    const admin = { "x-api-key": API_KEY, "content-type": "application/json" };
    const enq = async (url: string, prompt: string) => {
      const r = await fetch(`${url}/_admin/jobs`, {
        method: "POST",
        headers: admin,
        body: JSON.stringify({ payload: { model: "tiny", prompt } }),
      });
      expect(r.status).toBe(201);
      return ((await r.json()) as { job_id: string }).job_id;
    };
    const a = await enq(first.url, "a");
    const b = await enq(first.url, "b");
    const c = client(first.url);
    cleanups.push(() => c.close());
    await c.register(caps(), 2);
    expect((await c.poll(0))?.jobId).toBe(a);
    expect(await kill(first.child, "SIGKILL")).toBeNull(); // killed, no clean exit

    const second = await spawnCoordinator([...args, "--port", String(first.port)]);
    cleanups.push(() => kill(second.child, "SIGKILL"));
    expect(second.port).toBe(first.port);
    // The same client (same URL) carries on: the job handed over before the crash is accepted.
    const ack = await c.submit(completed(a));
    expect(ack.status).toBe(200);
    expect((await c.poll(0))?.jobId).toBe(b);

    const jobs = (await (await fetch(`${second.url}/_admin/jobs`, { headers: admin })).json()) as Array<{
      jobId: string;
      state: string;
    }>;
    expect(jobs.map((j) => [j.jobId, j.state])).toEqual([
      [a, "COMPLETED"],
      [b, "RUNNING"],
    ]);
    expect(await kill(second.child, "SIGTERM")).toBe(0); // clean stop on SIGTERM
  });

  it("injects seeded faults and counts them per kind", async () => {
    const coord = await startLocalCoordinator({
      faults: { serverErrorRate: 0.3, resetRate: 0.2, seed: 42, routes: ["poll"] },
    });
    cleanups.push(() => coord.close());
    const c = client(coord.url);
    cleanups.push(() => c.close());
    await c.register(caps(), 1); // not a faulty route
    const kinds: string[] = [];
    for (let i = 0; i < 40; i++) {
      try {
        await c.poll(0);
        kinds.push("ok");
      } catch (err) {
        kinds.push((err as { kind: string }).kind);
      }
    }
    const s = coord.stats();
    expect(s.faults.serverError).toBe(kinds.filter((k) => k === "server").length);
    expect(s.faults.reset).toBe(kinds.filter((k) => k === "network").length);
    expect(s.faults.serverError).toBeGreaterThan(0);
    expect(s.faults.reset).toBeGreaterThan(0);
    expect(kinds).toContain("ok");

    // Same seed, same faults.
    const again = await startLocalCoordinator({
      faults: { serverErrorRate: 0.3, resetRate: 0.2, seed: 42, routes: ["poll"] },
    });
    cleanups.push(() => again.close());
    const c2 = client(again.url);
    cleanups.push(() => c2.close());
    await c2.register(caps(), 1);
    for (let i = 0; i < 40; i++) await c2.poll(0).catch(() => undefined);
    expect(again.stats().faults).toEqual(s.faults);
  });

  it("drops the connection after committing a result: the retry meets 409 and the job stays completed once", async () => {
    const coord = await startLocalCoordinator({ faults: { dropAfterCommitRate: 1, routes: ["result"] } });
    cleanups.push(() => coord.close());
    const c = client(coord.url);
    cleanups.push(() => c.close());
    await c.register(caps(), 1);
    const id = coord.enqueue({ payload: { model: "tiny", prompt: "x" } });
    await c.poll(0);
    expect(await rejection(c.submit(completed(id)))).toMatchObject({ kind: "network" });
    expect(coord.job(id)?.state).toBe("COMPLETED");
    expect(await rejection(c.submit(completed(id)))).toMatchObject({ kind: "conflict" });
    expect(coord.stats()).toMatchObject({
      completions: 1,
      duplicateSubmissions: 1,
      faults: { dropAfterCommit: 1, serverError: 0, reset: 0, slow: 0 },
    });
  });

  it("delays answers with the slow fault, hitting the client's timeout", async () => {
    const coord = await startLocalCoordinator({ faults: { slowRate: 1, slowMs: 600, routes: ["poll"] } });
    cleanups.push(() => coord.close());
    const c = client(coord.url, { timeoutMs: 200 });
    cleanups.push(() => c.close());
    await c.register(caps(), 1);
    expect(await rejection(c.poll(0))).toMatchObject({ kind: "timeout" });
    expect(coord.stats().faults.slow).toBe(1);
  });

  it("bounds and validates request bodies", async () => {
    const coord = await startLocalCoordinator({ maxBodyBytes: 2048 });
    cleanups.push(() => coord.close());
    const c = client(coord.url);
    cleanups.push(() => c.close());
    await c.register(caps(), 1);
    const id = coord.enqueue({ payload: { model: "tiny", prompt: "x" } });
    await c.poll(0);
    const err = await rejection(c.submit(completed(id, "y".repeat(10_000))));
    expect(err).toMatchObject({ kind: "client", status: 413 });
    expect(coord.job(id)?.state).toBe("RUNNING");

    const bad = await fetch(`${coord.url}/v1/miners/poll`, {
      method: "POST",
      headers: { "x-miner-id": "miner-1", "content-type": "application/json" },
      body: "{oops",
    });
    expect(bad.status).toBe(400);
    // Not an object: neither dialect's register (a 400, not a handler crash).
    const nullRegister = await fetch(`${coord.url}/v1/miners/register`, {
      method: "POST",
      headers: { "x-miner-id": "miner-1", "content-type": "application/json" },
      body: "null",
    });
    expect(nullRegister.status).toBe(400);
    const noMiner = await fetch(`${coord.url}/v1/miners/poll`, { method: "POST", body: "{}" });
    expect(noMiner.status).toBe(400);
    const unknown = await fetch(`${coord.url}/v1/nothing`);
    expect(unknown.status).toBe(404);
  });

  it("waits for a condition and reports events", async () => {
    const coord = await startLocalCoordinator({});
    cleanups.push(() => coord.close());
    const events: string[] = [];
    coord.on((e) => events.push(e.type));
    const c = client(coord.url);
    cleanups.push(() => c.close());
    const id = coord.enqueue({ payload: { model: "tiny", prompt: "x" } });
    const done = coord.waitFor((k) => k.job(id)?.state === "COMPLETED", 60_000);
    await c.register(caps(), 1);
    await c.poll(0);
    await c.submit(completed(id));
    await done;
    expect(events).toEqual(["enqueued", "registered", "assigned", "completed"]);
    await expect(coord.waitFor(() => false, 50)).rejects.toThrow(/not met/);
  });
});
