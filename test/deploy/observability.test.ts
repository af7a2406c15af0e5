// The Grafana dashboard and the Prometheus alert rules in deploy/ against what /metrics serves:
// every series they name exists, with every label they match on; promtool (Debian's
// `prometheus` package) checks the rules and runs their unit tests where it is installed.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { createGpuInfoSource } from "../../src/gpu/index.js";
import { silentLogger } from "../../src/log.js";
import { OpsMetrics } from "../../src/ops/metrics.js";
import { fakeDevice } from "../fake-nvml/config.js";
import { fake, useFakeConfig } from "../support/gpu.js";
import { repoRoot } from "../support/harness.js";

const deploy = join(repoRoot, "deploy");
const dashboardFile = join(deploy, "grafana", "aitbc-miner-dashboard.json");
const rulesFile = join(deploy, "prometheus", "aitbc-miner-rules.yml");
// Labels Prometheus adds to every scraped series (target labels), not the miner's.
const TARGET_LABELS = new Set(["instance", "job"]);

interface Selector {
  metric: string;
  labels: string[];
  where: string;
}

/** Every `metric{matchers}` and bare `metric` in a PromQL expression. */
function selectors(expr: string, where: string): Selector[] {
  const out: Selector[] = [];
  for (const m of expr.matchAll(/\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?/g)) {
    const name = m[1]!;
    if (!/^(aitbc_|DCGM_)/.test(name) && name !== "up") continue;
    const labels = [...(m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)/g)].map((x) => x[1]!);
    out.push({ metric: name, labels, where });
  }
  return out;
}

function dashboardExprs(): { expr: string; where: string }[] {
  const dash = JSON.parse(readFileSync(dashboardFile, "utf8")) as {
    panels: { title: string; targets?: { expr: string }[] }[];
    templating: { list: { name: string; query?: unknown }[] };
  };
  const out = dash.panels.flatMap((p) =>
    (p.targets ?? []).map((t) => ({ expr: t.expr, where: `panel "${p.title}"` })),
  );
  for (const v of dash.templating.list)
    if (typeof v.query === "string" && v.query.startsWith("label_values("))
      out.push({ expr: v.query.replace(/^label_values\((.*),\s*\w+\)$/, "$1"), where: `variable ${v.name}` });
  return out;
}

function ruleExprs(): { expr: string; where: string }[] {
  const doc = parseYaml(readFileSync(rulesFile, "utf8")) as {
    groups: { rules: { alert: string; expr: string }[] }[];
  };
  return doc.groups.flatMap((g) => g.rules.map((r) => ({ expr: r.expr, where: `alert ${r.alert}` })));
}

/** What /metrics serves once workers have reported and a GPU snapshot is in: series → label names. */
let served: Map<string, Set<string>>;
beforeAll(async () => {
  const ops = new OpsMetrics();
  const labels = { gpu: "0", uuid: "GPU-11111111-2222-3333-4444-555555555555", miner_id: "host-gpu0" };
  ops.addWorker("w0", labels);
  ops.setGauges("w0", {
    inflight: 1,
    pendingSubmissions: 0,
    outboxFiles: 1,
    stateWritable: true,
    registered: true,
    servableModels: 1,
  });
  ops.workerRestarted("w0");
  ops.setGpuHealth([{ index: 0, uuid: labels.uuid, state: "lost" }]);
  ops.observe("w0", {
    type: "inference_runtime",
    backend: "cuda",
    platform: "CUDA",
    devices: ["NVIDIA H200"],
  });
  ops.observe("w0", { type: "poll", result: "job" });
  ops.observe("w0", { type: "poll", result: "empty" });
  ops.observe("w0", { type: "job_completed", durationMs: 1500, completionTokens: 40 });
  ops.observe("w0", { type: "job_failed", errorCode: "timeout" });
  ops.observe("w0", { type: "result_delivered", answer: "accepted", units: 1.5, amount: 0.03 });
  // A card slowed down by heat, so the clock-reason series has a sample.
  useFakeConfig({
    driver: "580.95.05",
    cuda: 13000,
    devices: [fakeDevice(0, { name: "NVIDIA H200", clockReasons: 0x40 })],
  });
  const src = await createGpuInfoSource({ nvmlLibrary: fake.current, log: silentLogger() });
  try {
    ops.setSnapshot(await src.snapshot());
  } finally {
    await src.close();
  }
  served = new Map();
  for (const line of (await ops.metrics()).split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s/.exec(line);
    if (!m) continue;
    const names = [...(m[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)].map((x) => x[1]!);
    const set = served.get(m[1]!) ?? new Set<string>();
    for (const n of names) set.add(n);
    served.set(m[1]!, set);
  }
});

describe("the dashboard and the alert rules name only what /metrics serves", () => {
  const all = () => [...dashboardExprs(), ...ruleExprs()].flatMap((e) => selectors(e.expr, e.where));

  it("parses both files and finds the series they use", () => {
    const names = new Set(all().map((s) => s.metric));
    // The coverage the issue asks for: utilisation, memory, temperature, power, jobs, tokens,
    // earnings, polls, the outbox.
    for (const n of [
      "DCGM_FI_DEV_GPU_UTIL",
      "DCGM_FI_DEV_FB_USED",
      "DCGM_FI_DEV_GPU_TEMP",
      "DCGM_FI_DEV_POWER_USAGE",
      "aitbc_miner_jobs_total",
      "aitbc_miner_jobs_cancelled_total",
      "aitbc_miner_tokens_generated_total",
      "aitbc_miner_earnings_total",
      "aitbc_miner_polls_total",
      "aitbc_miner_results_pending",
    ])
      expect(names, n).toContain(n);
  });

  it("every series exists, with every label matched on", () => {
    const problems: string[] = [];
    for (const s of all()) {
      if (s.metric === "up") continue; // Prometheus' own
      const labels = served.get(s.metric);
      if (!labels) {
        problems.push(`${s.where}: ${s.metric} is not served`);
        continue;
      }
      for (const l of s.labels)
        if (!TARGET_LABELS.has(l) && !labels.has(l))
          problems.push(`${s.where}: ${s.metric} has no label ${l}`);
    }
    expect(problems).toEqual([]);
  });

  it("the check itself catches a series that does not exist", () => {
    const bogus = selectors('rate(aitbc_miner_jobz_total{outcome="completed"}[5m])', "test");
    expect(bogus.map((s) => served.has(s.metric))).toEqual([false]);
  });
});

const promtool = spawnSync("promtool", ["--version"]).status === 0;
describe.skipIf(!promtool)("promtool", () => {
  it("checks the rules", () => {
    const r = spawnSync("promtool", ["check", "rules", rulesFile], { encoding: "utf8" });
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });

  it("runs the rules' unit tests", () => {
    const r = spawnSync(
      "promtool",
      ["test", "rules", join(deploy, "prometheus", "aitbc-miner-rules.test.yml")],
      {
        encoding: "utf8",
      },
    );
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });
});
