// `earnings --coordinator`: the coordinator's own view over real HTTP (the local coordinator in
// both modes): its earnings, its completed-job listing (a job it completed that left no receipt
// here, a receipt for a job it does not list) and the trust score.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { register as registerEarnings } from "../../src/commands/earnings.js";
import type { LocalCoordinator } from "../../src/local-coordinator/index.js";
import { startLocalCoordinator } from "../../src/local-coordinator/index.js";
import { generateKeyPair, parseJsonLossless, signPayload } from "../../src/receipts/index.js";
import { runCommand } from "../support/command-run.js";
import { API_KEY, caps, client, completed } from "../support/coordinator.js";
import { TreeWriter, workerDir } from "../support/earnings-tree.js";

const dirs: string[] = [];
let coord: LocalCoordinator | null = null;
afterEach(async () => {
  await coord?.close();
  coord = null;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe.each([
  ["reference", false],
  ["upstream", true],
])("earnings against the coordinator's view (%s mode)", (_mode, upstream) => {
  it("adds its earnings, trust score and the jobs it completed that have no receipt here", async () => {
    const coordinatorKey = generateKeyPair();
    coord = await startLocalCoordinator({
      upstreamQuirks: upstream,
      apiKeys: [API_KEY],
      signReceipt: (payload) => ({ ...payload, signature: signPayload(payload, coordinatorKey) }),
    });
    const minerId = "box-gpu0";
    const c = client(coord.url, { minerId, unitPrice: 0.05 });
    await c.register({ ...caps(), price: 0.05 }, 1);
    const stateDir = mkdtempSync(join(tmpdir(), "earnings-view-"));
    dirs.push(stateDir);
    const dir = workerDir(stateDir, "GPU-aaaa");
    const w = new TreeWriter(generateKeyPair(), coordinatorKey);
    const now = Math.floor(Date.now() / 1000);
    for (const n of [1, 2, 3]) {
      const id = coord.enqueue({ payload: { model: "tiny", prompt: `p${n}` } });
      expect((await c.poll(0))?.jobId).toBe(id);
      const ack = await c.submit(completed(id));
      // Job 3's lines never reached the disk here (a lost log, say): the coordinator still has it.
      if (n === 3) continue;
      const spec = { jobId: id, minerId, completedAt: now, durationMs: 250, unitPrice: 0.05 };
      await w.job(dir, spec);
      await w.log(dir).append({
        kind: "coordinator",
        jobId: id,
        receipt: parseJsonLossless(ack.coordinatorReceiptText!),
        verified: true,
        at: now * 1000,
      });
    }
    // A receipt signed for a job the coordinator does not list as completed for this miner.
    const ghost = { jobId: "ghost-1", minerId, completedAt: now, durationMs: 250, unitPrice: 0.05 };
    await w.job(dir, ghost);
    await w.signed(dir, ghost, { units: 0.25, unitPrice: 0.05 });
    await w.close();
    await c.close();

    const keyFile = join(stateDir, "api-key");
    writeFileSync(keyFile, `${API_KEY}\n`);
    chmodSync(keyFile, 0o600);
    const res = await runCommand(
      [registerEarnings],
      ["earnings", "--state-dir", stateDir, "--json", "--coordinator", coord.url, "--api-key-file", keyFile],
    );
    expect(res.code, res.err).toBe(0);
    const r = JSON.parse(res.out) as {
      totals: Record<string, number>;
      coordinator: { miners: Record<string, { ok: boolean; value?: unknown; reason?: string }>[] };
      reconciliation: { counts: Record<string, number>; issues: Record<string, unknown>[] };
    };
    // Locally: 3 jobs (2 real, the ghost), 0.25 GPU-s each at 0.05.
    expect(r.totals).toMatchObject({ jobs: 3, units: 0.75, amount: 0.0375, confirmed: 3 });
    const view = r.coordinator.miners[0]!;
    expect(view["minerId"]).toBe(minerId);
    expect(view["earnings"]).toMatchObject({
      ok: true,
      // Upstream pays out of escrow only (none here): 0; the reference coordinator: the signed prices.
      value: { total: upstream ? 0 : 0.0375, completedJobs: 3, currency: "AITBC" },
    });
    expect((view["completedJobs"] as { value: string[] }).value).toHaveLength(3);
    expect(view["trustScore"]).toMatchObject({ ok: true, value: { composite: 1 } });
    const issues = r.reconciliation.issues.filter((i) => i["detail"] !== "not checked: no coordinator key");
    const lost = coord.jobs().find((j) => j.payload["prompt"] === "p3")!.jobId;
    expect(issues.filter((i) => i["kind"] === "missing_receipt").map((i) => i["jobId"])).toEqual([lost]);
    expect(issues.filter((i) => i["kind"] === "unmatched_receipt").map((i) => i["jobId"])).toEqual([
      "ghost-1",
    ]);

    const text = await runCommand(
      [registerEarnings],
      ["earnings", "--state-dir", stateDir, "--coordinator", coord.url, "--api-key-file", keyFile],
    );
    expect(text.out).toContain(`${minerId}: earnings ${upstream ? 0 : 0.0375} AITBC`);
    expect(text.out).toContain("3 completed jobs listed; trust score 1");
    expect(text.out).not.toContain(API_KEY);
  });
});
