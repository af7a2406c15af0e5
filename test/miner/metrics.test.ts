import { describe, expect, it } from "vitest";
import { renderMinerMetrics, startMetricsServer } from "../../src/metrics.js";

const stats = {
  completed: 3,
  failed: 2,
  failuresByCode: { model_not_found: 1, 'we"ird': 1 },
  promptTokens: 10,
  busySeconds: 1.25,
  submitted: 3,
  dropped: 0,
  tokens: 24,
  inflight: 1,
  pendingSubmissions: 0,
  stateWritable: true,
};

describe("miner metrics", () => {
  it("renders valid exposition lines with escaped labels", () => {
    const text = renderMinerMetrics(stats, { miner_id: "m-1" });
    expect(text).toContain('aitbc_miner_jobs_completed_total{miner_id="m-1"} 3');
    expect(text).toContain('aitbc_miner_jobs_failed_total{miner_id="m-1",code="we\\"ird"} 1');
    for (const line of text.trim().split("\n")) {
      expect(line).toMatch(/^(# (HELP|TYPE) \w+ .+|\w+\{[^}]*\} [0-9.]+)$/);
    }
  });

  it("serves /metrics over HTTP on loopback", async () => {
    const server = await startMetricsServer("127.0.0.1", 0, async () =>
      renderMinerMetrics(stats, { miner_id: "x" }),
    );
    try {
      const r = await fetch(server.url);
      expect(r.status).toBe(200);
      expect(r.headers.get("content-type")).toMatch(/text\/plain/);
      expect(await r.text()).toContain("aitbc_miner_outbox_depth");
      expect((await fetch(server.url.replace("/metrics", "/nope"))).status).toBe(404);
    } finally {
      await server.close();
    }
  });
});
