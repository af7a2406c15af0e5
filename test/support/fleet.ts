// A multi-GPU host for the fleet tests: `run` on the fake NVML with up to four cards (one worker
// per card under its supervisor), plus the small waits and metric sums those tests share, and the
// rig the drain tests share (coordinator, webhook, events file).
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CoordinatorEvent, LocalCoordinator } from "../../src/local-coordinator/index.js";
import { fakeDevice, writeFakeNvmlConfig } from "../fake-nvml/config.js";
import { fakeNvmlPaths } from "../setup/fake-nvml.js";
import { type Spawned, spawnCli } from "./cli.js";
import { tmp } from "./gpu.js";
import { API_KEY, coordinatorWithReceipts, modelsDir, repoRoot } from "./harness.js";
import { freePort } from "./proxy.js";
import { type HostTestParts, startWebhook, type Webhook } from "./webhook.js";

export const FLEET_GPU_NAMES = ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB", "NVIDIA L4"];
/** A fourth card (cards: 4), for the health tests. */
const FOURTH_GPU_NAME = "NVIDIA L40S";

export interface FleetHostOptions {
  url: string;
  /** The host's ops port (/metrics, /healthz, /readyz); none when absent. */
  port?: number;
  extra?: string[];
  cards?: number;
  /** --polls-per-minute (default: so many that the budget never decides a test). */
  pollsPerMinute?: number;
  env?: NodeJS.ProcessEnv;
  /** The fake NVML's events file (appendFakeEvents), for health events. */
  eventsFile?: string;
  /** An earlier host's state directory (a restart); default: a new one. */
  stateDir?: string;
}

export function startFleetHost(o: FleetHostOptions): Spawned & { stateDir: string } {
  const dir = mkdtempSync(join(tmpdir(), "fleet-"));
  const config = writeFakeNvmlConfig(join(dir, "fake-nvml.conf"), {
    driver: "550.54.15",
    cuda: 12040,
    ...(o.eventsFile ? { eventsFile: o.eventsFile } : {}),
    devices: [...FLEET_GPU_NAMES, FOURTH_GPU_NAME]
      .slice(0, o.cards ?? 3)
      .map((name, i) => fakeDevice(i, { name })),
  });
  const spawned = spawnCli(
    [
      "run",
      ...["--coordinator", o.url, "--miner-id", "host", "--models", modelsDir, "--threads", "1"],
      ...["--gpu", "auto", "--state-dir", o.stateDir ?? join(dir, "state")],
      ...["--polls-per-minute", String(o.pollsPerMinute ?? 60_000)],
      ...["--long-poll", "0", "--heartbeat-interval", "1", "--grace-period", "5"],
      ...["--nvml-library", fakeNvmlPaths(repoRoot).current, "--log-level", "info"],
      ...(o.port === undefined ? [] : ["--metrics-port", String(o.port)]),
      ...(o.extra ?? []),
    ],
    // The fake cards have no CUDA runtime behind them: take them as each worker's compute devices.
    { FAKE_NVML_CONFIG: config, AITBC_API_KEY: API_KEY, AITBC_TEST_COMPUTE: "nvml", ...o.env },
  );
  return Object.assign(spawned, { stateDir: o.stateDir ?? join(dir, "state") });
}

export async function get(url: string): Promise<{ status: number; text: string }> {
  try {
    const r = await fetch(url);
    return { status: r.status, text: await r.text() };
  } catch {
    return { status: 0, text: "" };
  }
}

export async function until<T>(what: string, f: () => Promise<T | null> | T | null, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== null && v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Sum of a counter's samples whose labels include every given pair. */
export function sum(metrics: string, name: string, labels: Record<string, string>): number {
  let total = 0;
  for (const line of metrics.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    total += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return total;
}

/** A drain test's host: a coordinator that requeues failed jobs, a webhook, an events file. */
export interface DrainRig {
  coordinator: LocalCoordinator;
  hook: Webhook;
  events: CoordinatorEvent[];
  eventsFile: string;
  port: number;
  base: string;
  /** `run` with `cards` fake cards, alerts to the webhook, health read every second. */
  start(cards: number, stateDir?: string): Spawned & { stateDir: string };
}

/** Fills `t` (stopped after each test) and returns the rig. */
export async function drainRig(t: HostTestParts, name: string): Promise<DrainRig> {
  const events: CoordinatorEvent[] = [];
  const coordinator = (await coordinatorWithReceipts({ requeueOnFail: true, onEvent: (e) => events.push(e) }))
    .coordinator;
  t.coordinator = coordinator;
  const hook = await startWebhook();
  t.hook = hook;
  const eventsFile = join(tmp, `${name}-events-${process.pid}.txt`);
  writeFileSync(eventsFile, "");
  const port = await freePort();
  return {
    coordinator,
    hook,
    events,
    eventsFile,
    port,
    base: `http://127.0.0.1:${port}`,
    start: (cards, stateDir) => {
      const host = startFleetHost({
        url: coordinator.url,
        port,
        cards,
        eventsFile,
        extra: ["--alert-webhook", hook.url],
        env: { AITBC_GPU_HEALTH_INTERVAL_MS: "1000" },
        ...(stateDir ? { stateDir } : {}),
      });
      t.miner = host;
      return host;
    },
  };
}
