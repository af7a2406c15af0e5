// A webhook receiver on loopback for the alert tests: every POST body it got, parsed as JSON; and
// the parts a host's alert test starts (miner, coordinator, webhook), stopped after each test.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach } from "vitest";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import type { Spawned } from "./cli.js";

export interface Webhook {
  url: string;
  bodies: Record<string, unknown>[];
  /** Requests answered so far (a slow webhook answers late). */
  answered(): number;
  close(): Promise<void>;
}

/** `delayMs`: how long each answer takes (a slow webhook); `status`: what it answers. */
export async function startWebhook(o: { delayMs?: number; status?: number } = {}): Promise<Webhook> {
  const bodies: Record<string, unknown>[] = [];
  let answered = 0;
  const server = createServer((req, res) => {
    let text = "";
    req.on("data", (d: Buffer) => {
      text += d.toString();
    });
    req.on("end", () => {
      bodies.push(JSON.parse(text) as Record<string, unknown>);
      setTimeout(() => {
        answered++;
        res.writeHead(o.status ?? 200).end("ok");
      }, o.delayMs ?? 0);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    bodies,
    answered: () => answered,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** What a host test starts, stopped after each test: the miner (SIGTERM, then its exit), the coordinator, the webhook. */
export interface HostTestParts {
  coordinator: LocalCoordinator | null;
  miner: Spawned | null;
  hook: Webhook | null;
}

/** Call at a test file's top: the parts it fills in are stopped after each test. */
export function hostTestParts(): HostTestParts {
  const p: HostTestParts = { coordinator: null, miner: null, hook: null };
  afterEach(async () => {
    if (p.miner && p.miner.child.exitCode === null) {
      p.miner.child.kill("SIGTERM");
      await p.miner.exit;
    }
    await p.coordinator?.close();
    await p.hook?.close();
    p.miner = null;
    p.coordinator = null;
    p.hook = null;
  });
  return p;
}
