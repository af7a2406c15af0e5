// Shared fixtures for the coordinator suites.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { type CoordinatorClientOptions, createCoordinatorClient } from "../../src/coordinator/client.js";
import type { Capabilities, CompletedJob, CoordinatorClient } from "../../src/coordinator/types.js";
import { silentLogger } from "../../src/log.js";

export const API_KEY = "sk-test-5f1c9e0a7b3d4e21";

export function caps(models: string[] = ["tiny"], maxConcurrent = 1): Capabilities {
  return {
    gpus: [{ name: "NVIDIA Test GPU", memory_mb: 24576, uuid: "GPU-0000", compute_capability: "8.9" }],
    cuda: "12.4",
    models,
    platform: "CUDA",
    supported_tasks: ["inference"],
    max_concurrent_jobs: maxConcurrent,
  };
}

export function client(baseUrl: string, over: Partial<CoordinatorClientOptions> = {}): CoordinatorClient {
  return createCoordinatorClient({
    protocol: "aitbc",
    baseUrl,
    apiKey: API_KEY,
    minerId: "miner-1",
    timeoutMs: 2000,
    log: silentLogger(),
    ...over,
  });
}

export function completed(jobId: string, output = "hello world"): CompletedJob {
  return {
    jobId,
    output,
    model: "tiny",
    promptTokens: 3,
    completionTokens: 5,
    executionTimeS: 0.25,
    startedAt: 1_700_000_000_000,
    completedAt: 1_700_000_001_000,
    metrics: {
      duration_ms: 250,
      gpu_utilization: null,
      memory_used: null,
      memory_peak: null,
      units: 5,
      unit_type: "tokens",
    },
    receipt: {
      version: "1.0",
      job_id: jobId,
      units: 5,
      signature: { alg: "Ed25519", key_id: "k", sig: "s" },
    },
  };
}

/** A plain node:http server with a handler of the test's choosing (misbehaving coordinators). */
export async function rawServer(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ url: string; server: Server; close(): Promise<void> }> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

/** Await a rejection and return it (fails the test if the promise resolves). */
export async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error("expected the promise to reject");
}
