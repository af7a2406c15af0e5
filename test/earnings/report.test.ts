// The earnings report over a multi-GPU host's state tree (the host directory and two
// workers/<uuid>/), written with the repo's receipt code: rows per day, GPU and model as JSON and
// CSV (parsed, numbers checked), and the reconciliation finding a missing coordinator receipt, a
// units mismatch, a price mismatch, a bad signature and a torn line. `receipts` reads the whole tree too.
import { appendFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { register as registerEarnings } from "../../src/commands/earnings.js";
import { register as registerReceipts } from "../../src/commands/receipts.js";
import { stateFiles } from "../../src/paths.js";
import { buildMinerReceipt, generateKeyPair } from "../../src/receipts/index.js";
import { runCommand } from "../support/command-run.js";
import { type JobSpec, TreeWriter, workerDir } from "../support/earnings-tree.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const DAY1 = Date.UTC(2026, 2, 1, 10) / 1000; // 2026-03-01
const DAY2 = Date.UTC(2026, 2, 2, 9) / 1000; // 2026-03-02
const run = (args: string[]) => runCommand([registerEarnings, registerReceipts], args);

type Row = Record<string, unknown>;
interface Report {
  rows: Row[];
  totals: Row;
  sources: { gpu: string; minerIds: string[] }[];
  reconciliation: { jobs: number; counts: Record<string, number>; issues: Row[] };
}

async function buildTree() {
  const stateDir = mkdtempSync(join(tmpdir(), "earnings-"));
  dirs.push(stateDir);
  const coordinatorKey = generateKeyPair();
  const w = new TreeWriter(generateKeyPair(), coordinatorKey);
  const A = workerDir(stateDir, "GPU-aaaa");
  const B = workerDir(stateDir, "GPU-bbbb");
  mkdirSync(A, { recursive: true });
  mkdirSync(B, { recursive: true });
  const a = (id: string, ms: number): JobSpec => ({
    jobId: id,
    minerId: "box-gpu0",
    completedAt: DAY1,
    durationMs: ms,
    unitPrice: 0.05,
  });
  const b = (id: string, ms: number): JobSpec => ({
    jobId: id,
    minerId: "box-gpu1",
    completedAt: DAY2,
    durationMs: ms,
    unitPrice: 0.05,
  });
  // Worker A: two jobs, both signed as billed; one failure.
  for (const [id, ms] of [
    ["a1", 2000],
    ["a2", 3500],
  ] as const) {
    await w.job(A, a(id, ms));
    await w.signed(A, a(id, ms), { units: ms / 1000, unitPrice: 0.05 });
  }
  // The result of a2 accepted a second time (upstream bills it again, with a new receipt).
  await w.signed(A, a("a2", 3500), { units: 3.5, unitPrice: 0.05 });
  await w.failure(A, "a3", "insufficient_vram", DAY1 * 1000 + 60_000);
  // A line whose receipt is another job's: not counted, reported.
  const stray = buildMinerReceipt(
    {
      jobId: "zz",
      minerId: "box-gpu0",
      model: "tiny",
      prompt: "p",
      output: "o",
      units: 1,
      startedAt: DAY1,
      completedAt: DAY1,
      durationMs: 1,
    },
    generateKeyPair(),
  );
  await w.log(A).append({ kind: "miner", jobId: "a9", receipt: stray, verified: true, at: DAY1 * 1000 });
  // Worker B: units differ, a receipt missing, a price that differs, a receipt changed after signing.
  await w.job(B, b("b1", 1000));
  await w.signed(B, b("b1", 1000), { units: 1.5, unitPrice: 0.05 });
  await w.job(B, b("b2", 4000));
  await w.job(B, b("b3", 2000));
  await w.signed(B, b("b3", 2000), { units: 2, unitPrice: 0.02 });
  await w.job(B, b("b4", 2000));
  await w.signed(B, b("b4", 2000), { units: 2, unitPrice: 0.05, tamper: { price: 0.2 }, verified: null });
  // The host's own log (before the fleet, or a single-GPU host): an old line without `billed`.
  const h: JobSpec = { jobId: "h1", minerId: "box", completedAt: DAY1, durationMs: 2000 };
  await w.job(stateDir, h);
  await w.signed(stateDir, h, { units: 2, unitPrice: 0.02 });
  await w.close();
  // A crash mid-write, and a line some other tool wrote.
  appendFileSync(stateFiles.receiptsLog(B), '{"at":"2026-03-02T10:00:00Z","kind":"miner","jobId":"b5","rec');
  appendFileSync(stateFiles.receiptsLog(A), '\n{"hello":"world"}\n');
  return { stateDir, coordinatorKey };
}

describe("earnings", () => {
  it("reports the whole host per day, GPU and model, as JSON and CSV", async () => {
    const { stateDir, coordinatorKey } = await buildTree();
    const res = await run([
      "earnings",
      "--state-dir",
      stateDir,
      "--json",
      "--coordinator-key",
      coordinatorKey.publicKeyHex,
    ]);
    expect(res.code, res.err).toBe(0);
    const r = JSON.parse(res.out) as Report;
    expect(r.sources.map((s) => [s.gpu, s.minerIds])).toEqual([
      ["host", ["box"]],
      ["GPU-aaaa", ["box-gpu0"]],
      ["GPU-bbbb", ["box-gpu1"]],
    ]);
    const rows = r.rows.map((x) => [
      x["day"],
      x["gpu"],
      x["model"],
      x["jobs"],
      x["units"],
      x["unitPrice"],
      x["amount"],
      x["confirmed"],
      x["failures"],
    ]);
    expect(rows).toEqual([
      ["2026-03-01", "GPU-aaaa", "-", 0, 0, null, 0, 0, 1],
      ["2026-03-01", "GPU-aaaa", "tiny", 2, 5.5, 0.05, 0.275, 2, 0],
      ["2026-03-01", "host", "tiny", 1, 2, 0.02, 0.04, 1, 0],
      // b1 1.5 signed units (0.075) + b2 4 unsigned (asked 0.2) + b3 2 (0.04) + b4 2 (0.2 as logged)
      ["2026-03-02", "GPU-bbbb", "tiny", 4, 9.5, null, 0.515, 3, 0],
    ]);
    expect(r.totals).toEqual({ jobs: 7, units: 17, amount: 0.83, confirmed: 6, failures: 1 });

    const c = r.reconciliation.counts;
    expect(r.reconciliation.jobs).toBe(7);
    expect(c).toMatchObject({
      missing_receipt: 1,
      units_mismatch: 1,
      price_mismatch: 2,
      bad_signature: 1,
      unverified: 0,
      duplicate_receipt: 1,
      invalid_entry: 1,
      unreadable_line: 2,
    });
    const issue = (kind: string) => r.reconciliation.issues.filter((i) => i["kind"] === kind);
    expect(issue("missing_receipt")[0]).toMatchObject({ gpu: "GPU-bbbb", jobId: "b2" });
    expect(issue("units_mismatch")[0]).toMatchObject({ jobId: "b1" });
    expect(issue("units_mismatch")[0]!["detail"]).toContain("sent 1 gpu_seconds, the coordinator signed 1.5");
    expect(
      issue("price_mismatch")
        .map((i) => i["jobId"])
        .sort(),
    ).toEqual(["b3", "b4"]);
    expect(issue("bad_signature")[0]).toMatchObject({ jobId: "b4" });
    expect(issue("duplicate_receipt")[0]).toMatchObject({ gpu: "GPU-aaaa", jobId: "a2" });
    expect(issue("invalid_entry")[0]).toMatchObject({ jobId: "a9" });
    expect(issue("unreadable_line").map((i) => [String(i["file"]).includes("GPU-"), i["line"]])).toEqual([
      [true, 9],
      [true, 8],
    ]);

    // Without the key, the verdict logged at the time: b4's was "not checked".
    const plain = JSON.parse((await run(["earnings", "--state-dir", stateDir, "--json"])).out) as Report;
    expect(plain.reconciliation.counts).toMatchObject({ bad_signature: 0, unverified: 1 });

    const csv = await run(["earnings", "--state-dir", stateDir, "--csv"]);
    expect(csv.code).toBe(0);
    const [head, ...lines] = csv.out
      .trimEnd()
      .split("\r\n")
      .map((l) => l.split(","));
    expect(head).toEqual([
      "day",
      "gpu",
      "model",
      "jobs",
      "units",
      "unit_price",
      "amount",
      "signed_jobs",
      "unpriced_jobs",
      "failures",
    ]);
    expect(lines).toHaveLength(4);
    const byKey = new Map(lines.map((l) => [`${l[0]} ${l[1]} ${l[2]}`, l]));
    const b = byKey.get("2026-03-02 GPU-bbbb tiny")!;
    expect([Number(b[3]), Number(b[4]), b[5], Number(b[6]), Number(b[7])]).toEqual([4, 9.5, "", 0.515, 3]);
    const a = byKey.get("2026-03-01 GPU-aaaa tiny")!;
    expect([Number(a[3]), Number(a[4]), Number(a[5]), Number(a[6])]).toEqual([2, 5.5, 0.05, 0.275]);
    const sum = lines.reduce((s, l) => s + Number(l[6]), 0);
    expect(Math.round(sum * 1e6) / 1e6).toBe(0.83);

    const text = await run(["earnings", "--state-dir", stateDir]);
    expect(text.out).toMatch(/2026-03-02 +GPU-bbbb +tiny +4 +9\.5 +mixed +0\.515/);
    expect(text.out).toContain("1 no coordinator receipt, 1 units differ, 2 price differs");
    expect((await run(["earnings", "--state-dir", stateDir, "--json", "--csv"])).code).toBe(2);
  });

  it("`receipts` reads every worker's log, not only the host's", async () => {
    const { stateDir } = await buildTree();
    const res = await run(["receipts", "--state-dir", stateDir, "--json", "--limit", "0"]);
    const s = JSON.parse(res.out) as {
      count: number;
      byKind: Record<string, number>;
      failures: number;
      paths: string[];
    };
    expect(s.count).toBe(15);
    expect(s.byKind).toEqual({ miner: 8, coordinator: 7 });
    expect(s.failures).toBe(1);
    expect(s.paths).toHaveLength(3);
    const empty = mkdtempSync(join(tmpdir(), "earnings-empty-"));
    dirs.push(empty);
    expect((await run(["earnings", "--state-dir", empty])).out).toContain("no jobs yet");
  });
});
