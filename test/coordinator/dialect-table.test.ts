// The dialect table is the one place a dialect's traits are written: the miner reads them and
// never compares names. A third dialect registered here (the aitbc wire, but polls that must not
// run in parallel, no long-poll, no published limit, no credential required, no price) changes
// the miner's behaviour with nothing in src/miner/ edited.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { resolveRunConfig } from "../../src/config.js";
import { AitbcClient } from "../../src/coordinator/aitbc.js";
import { createCoordinatorClient } from "../../src/coordinator/client.js";
import { dialectNames, dialectTraits, isDialect, registerDialect } from "../../src/coordinator/dialects.js";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { silentLogger } from "../../src/log.js";
import { Miner } from "../../src/miner/loop.js";
import { pollRound, pollsWanted } from "../../src/miner/poll-round.js";
import { pollSettings } from "../../src/miner/poll-settings.js";
import { answer, scriptedBackend } from "../support/backends.js";
import { closeAfterEach } from "../support/cleanup.js";
import { API_KEY, coordinatorWithReceipts } from "../support/harness.js";
import { testMinerDeps } from "../support/miner-deps.js";
import { type FaultProxy, startFaultProxy } from "../support/proxy.js";

const SERIAL = "aitbc-serial";
registerDialect({
  name: SERIAL,
  traits: { longPoll: false, parallelPolls: false, pollLimit: false, authRequired: false, priced: false },
  create: (o) => new AitbcClient(o),
});

const closeLater = closeAfterEach();
let coordinator: LocalCoordinator | null = null;
let proxy: FaultProxy | null = null;

const POLL = "POST /v1/miners/poll";
const models = mkdtempSync(join(tmpdir(), "dialect-models-"));

function clientOf(protocol: string, url: string, minerId: string) {
  return createCoordinatorClient({
    protocol,
    baseUrl: url,
    apiKey: API_KEY,
    minerId,
    timeoutMs: 5000,
    log: silentLogger(),
  });
}

describe("the dialect table", () => {
  it("lists the built-in dialects with their traits, and refuses a bad or taken name", () => {
    expect(dialectNames().slice(0, 2)).toEqual(["aitbc", "claim"]);
    expect(dialectTraits("aitbc")).toEqual({
      longPoll: true,
      parallelPolls: true,
      pollLimit: true,
      authRequired: true,
      priced: true,
    });
    expect(dialectTraits("claim")).toMatchObject({ parallelPolls: false, authRequired: false });
    expect(() =>
      registerDialect({ name: "aitbc", traits: dialectTraits("aitbc"), create: () => null as never }),
    ).toThrow(/already registered/);
    expect(() =>
      registerDialect({ name: "Bad Name", traits: dialectTraits("aitbc"), create: () => null as never }),
    ).toThrow(/invalid dialect name/);
    expect(isDialect("grpc")).toBe(false);
    expect(() => dialectTraits("grpc")).toThrow(/unknown coordinator dialect "grpc"/);
  });

  it("a registered dialect is a --protocol value at once, and its traits decide the settings", () => {
    const cfg = resolveRunConfig({
      flags: { coordinator: "http://127.0.0.1:9", models, protocol: SERIAL },
      env: {},
    });
    // No credential needed: its row says so (aitbc refuses the same flags, see config.test.ts).
    expect(cfg.protocol).toBe(SERIAL);
    expect(() =>
      resolveRunConfig({ flags: { coordinator: "http://127.0.0.1:9", models, protocol: "aitbc" }, env: {} }),
    ).toThrow(/an API key is required for --protocol aitbc/);
    expect(() =>
      resolveRunConfig({ flags: { coordinator: "http://127.0.0.1:9", models, protocol: "grpc" }, env: {} }),
    ).toThrow(new RegExp(`--protocol: Invalid option: expected one of .*"${SERIAL}"`));
    // No long-poll and no published limit: no wait asked, the window unbounded.
    const s = pollSettings({ protocol: SERIAL, pollsPerMinute: 100, longPoll: 20 }, {}, {});
    expect(s).toMatchObject({ longPollSeconds: 0, pollsPerWindow: Number.POSITIVE_INFINITY });
    expect(pollSettings({ protocol: "aitbc", pollsPerMinute: 100, longPoll: 20 }, {}, {})).toMatchObject({
      longPollSeconds: 20,
      pollsPerWindow: 90,
    });
    const client = clientOf(SERIAL, "http://127.0.0.1:9", "m");
    expect(client.protocol).toBe(SERIAL);
    expect(pollsWanted(client.traits, true, 4)).toBe(1);
  });

  it("a poll round in a backlog sends one poll per granted slot for aitbc, one for the serial dialect", async () => {
    coordinator = closeLater((await coordinatorWithReceipts()).coordinator);
    const url = coordinator.url;
    for (let i = 0; i < 6; i++) coordinator.enqueue({ payload: { model: "m", prompt: "p" } });
    const caps = {
      gpus: [],
      cuda: null,
      models: ["m"],
      platform: "CPU" as const,
      supported_tasks: ["inference"] as ["inference"],
      max_concurrent_jobs: 4,
    };
    const signal = new AbortController().signal;
    const round = { longPollSeconds: 0, polls: 3, backlog: true, signal };
    const aitbc = clientOf("aitbc", url, "round-aitbc");
    await aitbc.register(caps, 4);
    expect((await pollRound(aitbc, round)).jobs).toHaveLength(3);
    const serial = clientOf(SERIAL, url, "round-serial");
    await serial.register(caps, 4);
    const r = await pollRound(serial, round);
    expect(r.outcomes).toHaveLength(1);
    expect(r.jobs).toHaveLength(1);
  });

  it("a miner on the serial dialect fills four slots one poll at a time", async () => {
    coordinator = closeLater((await coordinatorWithReceipts()).coordinator);
    // Each poll takes 40 ms to arrive, so parallel polls would overlap at the proxy.
    proxy = closeLater(await startFaultProxy(coordinator.url, [{ route: POLL, times: 1e9, delayMs: 40 }]));
    const backend = scriptedBackend("m", async (req) => {
      await new Promise((r) => setTimeout(r, 30));
      return answer(req, "ok", 30);
    });
    const deps = testMinerDeps({ url: proxy.url, backend, minerId: "serial-miner", concurrency: 4 });
    const miner = new Miner({ ...deps, client: clientOf(SERIAL, proxy.url, "serial-miner") });
    const ids = Array.from({ length: 16 }, () =>
      coordinator!.enqueue({ payload: { model: "m", prompt: "p" } }),
    );
    const done = miner.run();
    await coordinator.waitFor((c) => ids.every((id) => c.job(id)?.state === "COMPLETED"), 60_000);
    await miner.shutdown("test over");
    expect((await done).code).toBe(0);
    expect(proxy.peak[POLL]).toBe(1);
    expect(miner.snapshot()).toMatchObject({ completed: 16, failed: 0 });
  });
});
