// The deployment files against the code they deploy: every manifest parses; probe paths and the
// metrics port are what the ops server serves; every AITBC_* variable and flag named is a real
// setting; the grace periods cover the miner's stop budget; the image runs the built CLI as the
// user the manifests expect, who can write the state path; the API key arrives as a file.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { envName, SETTINGS } from "../../src/config.js";
import { runShutdownBudgetMs } from "../../src/miner/index.js";
import { OPS_PATHS, type OpsServer, startOpsServer } from "../../src/ops/server.js";
import { repoRoot } from "../support/harness.js";

type Obj = Record<string, unknown>;
const deploy = join(repoRoot, "deploy");
const read = (f: string) => readFileSync(join(deploy, f), "utf8");
const docs = (f: string): Obj[] =>
  parseAllDocuments(read(f)).map((d) => {
    expect(d.errors, `${f}: ${d.errors.join("; ")}`).toEqual([]);
    return d.toJS() as Obj;
  });
const k8s = ["namespace.yaml", "config.yaml", "daemonset.yaml", "podmonitor.yaml"].flatMap((f) =>
  docs(`k8s/${f}`),
);
const byKind = (kind: string) => k8s.filter((d) => d["kind"] === kind);
const compose = docs("docker-compose.yml")[0]!;
const dockerfile = read("Dockerfile");

const daemonset = byKind("DaemonSet")[0] as Obj;
const podSpec = (daemonset["spec"] as Obj)["template"] as Obj;
const pod = podSpec["spec"] as Obj;
const miner = (pod["containers"] as Obj[]).find((c) => c["name"] === "miner")!;
const configMap = byKind("ConfigMap")[0]!["data"] as Record<string, string>;
const service = (compose["services"] as Obj)["miner"] as Obj;

const VALID_ENV = new Set([...SETTINGS.map(envName), "AITBC_CONFIG"]);
const DEFAULT_GRACE = Number(
  (SETTINGS.find((s) => s.key === "gracePeriod")?.help.match(/default: (\d+)/) ?? [])[1] ?? 30,
);

/** Every AITBC_* name in a text. */
const aitbcNames = (text: string) => [...text.matchAll(/AITBC_[A-Z0-9_]+/g)].map((m) => m[0]);

let server: OpsServer;
beforeAll(async () => {
  server = await startOpsServer("127.0.0.1", 0, {
    contentType: "text/plain",
    metrics: async () => "# metrics\n",
    health: () => ({ live: true, ready: false, reasons: ["not registered with the coordinator"] }),
  });
});
afterAll(async () => server.close());

describe("deployment contract", () => {
  it("every file parses; the kinds an operator applies are there", () => {
    expect(k8s.map((d) => d["kind"]).sort()).toEqual(
      ["ConfigMap", "DaemonSet", "Namespace", "PodMonitor", "Secret", "ServiceAccount"].sort(),
    );
    expect(service).toBeDefined();
  });

  it("probes use paths the ops server serves, on the metrics port", async () => {
    const port = Number(configMap["AITBC_METRICS_PORT"]);
    const named = (miner["ports"] as Obj[]).find((p) => p["name"] === "metrics")!;
    expect(named["containerPort"]).toBe(port);
    const live = (miner["livenessProbe"] as Obj)["httpGet"] as Obj;
    const ready = (miner["readinessProbe"] as Obj)["httpGet"] as Obj;
    expect([live["path"], live["port"]]).toEqual([OPS_PATHS.live, "metrics"]);
    expect([ready["path"], ready["port"]]).toEqual([OPS_PATHS.ready, "metrics"]);
    for (const path of [live["path"], ready["path"], OPS_PATHS.metrics]) {
      const r = await fetch(`${server.url}${path as string}`);
      expect(r.status, String(path)).not.toBe(404);
    }
    expect((await fetch(`${server.url}${OPS_PATHS.ready}`)).status).toBe(503);
    // The image's default port, the compose port and healthcheck, the Dockerfile healthcheck agree.
    expect(dockerfile).toContain(`AITBC_METRICS_PORT=${port}`);
    expect(dockerfile).toMatch(new RegExp(`EXPOSE ${port}\\b`));
    expect(dockerfile).toContain(OPS_PATHS.live);
    expect((service["ports"] as string[]).some((p) => p.endsWith(`:${port}`))).toBe(true);
    expect(JSON.stringify(service["healthcheck"])).toContain(`:${port}${OPS_PATHS.live}`);
    const annotations = (podSpec["metadata"] as Obj)["annotations"] as Record<string, string>;
    expect(annotations).toMatchObject({
      "prometheus.io/scrape": "true",
      "prometheus.io/port": String(port),
      "prometheus.io/path": OPS_PATHS.metrics,
    });
    const endpoint = ((byKind("PodMonitor")[0]!["spec"] as Obj)["podMetricsEndpoints"] as Obj[])[0]!;
    expect(endpoint).toMatchObject({ port: "metrics", path: OPS_PATHS.metrics });
  });

  it("every AITBC_* variable named anywhere is a real setting", () => {
    const texts = [
      read("Dockerfile"),
      read("docker-compose.yml"),
      ...["config.yaml", "daemonset.yaml"].map((f) => read(`k8s/${f}`)),
    ];
    const names = new Set(texts.flatMap(aitbcNames));
    expect(names.size).toBeGreaterThan(5);
    for (const n of names) expect(VALID_ENV.has(n), `${n} is not a setting`).toBe(true);
  });

  it("the commands and flags named are real", () => {
    const flags = new Set(SETTINGS.map((s) => s.flag));
    const args = [
      ...(miner["args"] as string[]),
      ...(JSON.parse(dockerfile.match(/^CMD (.+)$/m)![1]!) as string[]),
    ];
    for (const a of args) {
      if (a.startsWith("--")) expect(flags.has(a.split("=")[0]!), a).toBe(true);
      else expect(["run"]).toContain(a);
    }
  });

  it("the grace periods cover the miner's stop budget (plus the supervisor's 5 s)", () => {
    const grace = Number(configMap["AITBC_GRACE_PERIOD"] ?? DEFAULT_GRACE);
    const needS = Math.ceil(runShutdownBudgetMs(grace) / 1000) + 5;
    expect(pod["terminationGracePeriodSeconds"] as number).toBeGreaterThan(needS);
    const composeGrace = Number((service["environment"] as Record<string, string>)["AITBC_GRACE_PERIOD"]);
    const stop = Number(String(service["stop_grace_period"]).replace(/s$/, ""));
    expect(stop).toBeGreaterThan(Math.ceil(runShutdownBudgetMs(composeGrace) / 1000) + 5);
    expect(dockerfile).toMatch(/^STOPSIGNAL SIGTERM$/m);
    expect(service["stop_signal"]).toBe("SIGTERM");
  });

  it("the image runs the built CLI without npx, as the user the manifests expect, who owns the state path", () => {
    const entry = JSON.parse(dockerfile.match(/^ENTRYPOINT (.+)$/m)![1]!) as string[];
    expect(entry).toEqual(["node", "/app/bin/aitbc-native-miner.js"]);
    expect(existsSync(join(repoRoot, "bin", "aitbc-native-miner.js"))).toBe(true);
    expect(dockerfile).toMatch(/COPY --from=build \/src\/dist \.\/dist/);
    expect(dockerfile).toMatch(/COPY --from=build \/src\/bin \.\/bin/);
    expect(dockerfile).not.toMatch(/\bnpx\b/);
    const uid = Number(dockerfile.match(/^USER (\d+)/m)![1]);
    const sc = pod["securityContext"] as Obj;
    expect(sc).toMatchObject({ runAsNonRoot: true, runAsUser: uid });
    const stateDir = dockerfile.match(/AITBC_STATE_DIR=(\S+)/)![1]!;
    expect(dockerfile).toMatch(new RegExp(`install -d -o ${uid} -g ${uid} -m 0700 ${stateDir}`));
    expect(dockerfile).toContain(`VOLUME ["${stateDir}"]`);
    const env = Object.fromEntries((miner["env"] as Obj[]).map((e) => [e["name"], e["value"]]));
    expect(env["AITBC_STATE_DIR"]).toBe(stateDir);
    const mounts = miner["volumeMounts"] as Obj[];
    const stateMount = mounts.find((m) => m["mountPath"] === stateDir)!;
    const volume = (pod["volumes"] as Obj[]).find((v) => v["name"] === stateMount["name"])!;
    expect(volume["hostPath"]).toMatchObject({ type: "DirectoryOrCreate" }); // survives pod restarts
    const init = (pod["initContainers"] as Obj[])[0]!;
    expect(JSON.stringify(init["command"])).toContain(`'${stateDir}', ${uid}, ${uid}`);
    expect((service["volumes"] as string[]).some((v) => v.endsWith(`:${stateDir}`))).toBe(true);
  });

  it("the API key arrives as a file, never as a value", () => {
    const texts = [
      read("Dockerfile"),
      read("docker-compose.yml"),
      read("k8s/config.yaml"),
      read("k8s/daemonset.yaml"),
    ];
    for (const t of texts) expect(t).not.toMatch(/AITBC_API_KEY[:=\s]/);
    const env = Object.fromEntries((miner["env"] as Obj[]).map((e) => [e["name"], e["value"]]));
    const keyFile = env["AITBC_API_KEY_FILE"] as string;
    const mount = (miner["volumeMounts"] as Obj[]).find((m) =>
      keyFile.startsWith(`${m["mountPath"] as string}/`),
    )!;
    const volume = (pod["volumes"] as Obj[]).find((v) => v["name"] === mount["name"])!;
    const secretName = (byKind("Secret")[0]!["metadata"] as Obj)["name"];
    expect((volume["secret"] as Obj)["secretName"]).toBe(secretName);
    expect(keyFile.endsWith("/aitbc-api-key")).toBe(true);
    // Group-readable at most: the miner refuses a key file others can read.
    expect((volume["secret"] as Obj)["defaultMode"]).toBe(0o440);
    expect((service["environment"] as Record<string, string>)["AITBC_API_KEY_FILE"]).toBe(
      "/run/secrets/aitbc-api-key",
    );
    expect(service["secrets"]).toEqual(["aitbc-api-key"]);
  });
});
