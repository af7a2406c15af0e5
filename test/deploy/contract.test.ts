// The deployment files against the code they deploy: every manifest parses; probe paths and the
// metrics port are what the ops server serves; every AITBC_* variable and flag named is a real
// setting; the grace periods cover the miner's stop budget; the image runs the built CLI as the
// user the manifests expect, who can write the state path; the API key arrives as a file. And the
// image computes on the GPU: a pinned CUDA runtime base that carries cuBLAS, of the CUDA major the
// installed node-llama-cpp CUDA backend links against, with a CUDA backend built for the
// datacenter architectures; Compose asks for GPUs in the form every Compose since 1.28 reads; the
// Kubernetes steps of docs/deploy.md, followed in order, never replace the real API key.
import { execFileSync, spawnSync } from "node:child_process";
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync } from "node:fs";
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
const parseYaml = (text: string, what: string): Obj[] =>
  parseAllDocuments(text)
    .map((d) => {
      expect(d.errors, `${what}: ${d.errors.join("; ")}`).toEqual([]);
      return d.toJS() as Obj | null;
    })
    .filter((d): d is Obj => d != null);
const docs = (f: string): Obj[] => parseYaml(read(f), f);
const k8sFiles = readdirSync(join(deploy, "k8s"))
  .filter((f) => /\.ya?ml$/.test(f))
  .sort();
const k8sByFile = new Map(k8sFiles.map((f) => [`deploy/k8s/${f}`, docs(`k8s/${f}`)]));
const k8s = [...k8sByFile.values()].flat();
const byKind = (kind: string) => k8s.filter((d) => d["kind"] === kind);
const compose = docs("docker-compose.yml")[0]!;
const dockerfile = read("Dockerfile");
const deployDoc = readFileSync(join(repoRoot, "docs", "deploy.md"), "utf8");

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

// ---- the Dockerfile, as stages of logical instructions ----------------------------------------

interface Stage {
  /** The FROM image, ARGs substituted. */
  from: string;
  alias: string | undefined;
  /** Instructions after FROM, continuation lines joined, comments dropped, ARGs substituted. */
  instructions: string[];
}

/** Splits a Dockerfile into stages; `${NAME}` takes the default of the ARG in scope. */
function dockerStages(text: string): Stage[] {
  const logical: string[] = [];
  let pending = "";
  for (const raw of text.split("\n")) {
    if (/^\s*#/.test(raw)) continue; // comments, also inside a continued instruction
    const line = raw.trimEnd();
    if (line.endsWith("\\")) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const whole = (pending + line).trim();
    pending = "";
    if (whole) logical.push(whole);
  }
  const globalArgs = new Map<string, string>();
  const stages: Stage[] = [];
  let args = globalArgs;
  const subst = (s: string, scope: Map<string, string>) =>
    s.replace(/\$\{(\w+)\}|\$(\w+)/g, (m, a: string | undefined, b: string | undefined) => {
      const v = scope.get((a ?? b)!);
      return v ?? m;
    });
  for (const ins of logical) {
    const [keyword, ...rest] = ins.split(/\s+/);
    const body = rest.join(" ");
    if (keyword!.toUpperCase() === "FROM") {
      const m = subst(body, globalArgs).match(/^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i)!;
      stages.push({ from: m[1]!, alias: m[2], instructions: [] });
      args = new Map(globalArgs);
      continue;
    }
    if (keyword!.toUpperCase() === "ARG") {
      const m = body.match(/^(\w+)(?:=(.*))?$/)!;
      const value = m[2]?.replace(/^"(.*)"$/, "$1");
      if (value !== undefined) args.set(m[1]!, value);
      else if (stages.length && globalArgs.has(m[1]!)) args.set(m[1]!, globalArgs.get(m[1]!)!);
      if (!stages.length) continue;
    }
    if (!stages.length) continue;
    stages.at(-1)!.instructions.push(`${keyword!.toUpperCase()} ${subst(body, args)}`);
  }
  return stages;
}

/** NVIDIA's CUDA image reference: nvidia/cuda:<major>.<minor>.<patch>-<flavour>-<os>[@digest]. */
function cudaImage(ref: string) {
  const m = ref.match(
    /^(?:(?:docker\.io|nvcr\.io)\/)?nvidia\/cuda:(\d+)\.(\d+)\.(\d+)-(?:cudnn\d*-)?(base|runtime|devel)-([a-z]+\d+\.\d+)(@sha256:[0-9a-f]{64})?$/,
  );
  if (!m) return null;
  return {
    version: `${m[1]}.${m[2]}.${m[3]}`,
    major: Number(m[1]),
    flavour: m[4] as "base" | "runtime" | "devel",
    os: m[5]!,
  };
}

const stages = dockerStages(dockerfile);
const runtimeStage = stages.at(-1)!;
const runtimeText = runtimeStage.instructions.join("\n");

// ---- DT_NEEDED of a shared object (ELF64 little-endian), read with positional reads ----------

function neededLibraries(path: string): string[] {
  const fd = openSync(path, "r");
  try {
    const at = (offset: number, length: number) => {
      const b = Buffer.alloc(length);
      const n = readSync(fd, b, 0, length, offset);
      if (n !== length) throw new Error(`${path}: truncated at ${offset}`);
      return b;
    };
    const h = at(0, 64);
    if (h.readUInt32BE(0) !== 0x7f454c46 || h[4] !== 2 || h[5] !== 1)
      throw new Error(`${path}: not ELF64 LE`);
    const shoff = Number(h.readBigUInt64LE(0x28));
    const shentsize = h.readUInt16LE(0x3a);
    const shnum = h.readUInt16LE(0x3c);
    const sections = at(shoff, shentsize * shnum);
    const section = (i: number) => ({
      type: sections.readUInt32LE(i * shentsize + 4),
      offset: Number(sections.readBigUInt64LE(i * shentsize + 0x18)),
      size: Number(sections.readBigUInt64LE(i * shentsize + 0x20)),
      link: sections.readUInt32LE(i * shentsize + 0x28),
    });
    const SHT_DYNAMIC = 6;
    const dyn = Array.from({ length: shnum }, (_, i) => section(i)).find((s) => s.type === SHT_DYNAMIC);
    if (!dyn) return [];
    const strtab = section(dyn.link);
    const strings = at(strtab.offset, strtab.size);
    const entries = at(dyn.offset, dyn.size);
    const needed: string[] = [];
    for (let o = 0; o + 16 <= entries.length; o += 16) {
      const tag = entries.readBigUInt64LE(o);
      if (tag === 0n) break; // DT_NULL
      if (tag !== 1n) continue; // DT_NEEDED
      const start = Number(entries.readBigUInt64LE(o + 8));
      needed.push(strings.toString("latin1", start, strings.indexOf(0, start)));
    }
    return needed;
  } finally {
    closeSync(fd);
  }
}

const cudaPrebuilt = join(
  repoRoot,
  "node_modules",
  "@node-llama-cpp",
  "linux-x64-cuda",
  "bins",
  "linux-x64-cuda",
  "libggml-cuda.so",
);

// ---- the Kubernetes steps of docs/deploy.md ----------------------------------------------------

/** The `kubectl` lines of the first shell block under "## A fleet: Kubernetes", in order. */
function documentedKubectlSteps(): string[] {
  const section = deployDoc.split(/^## /m).find((s) => s.startsWith("A fleet: Kubernetes"));
  expect(section, 'docs/deploy.md has a "## A fleet: Kubernetes" section').toBeDefined();
  const block = section!.match(/```sh\n([\s\S]*?)```/)?.[1] ?? "";
  return block
    .split("\n")
    .map((l) => l.replace(/\s+#.*$/, "").trim())
    .filter((l) => l.startsWith("kubectl "));
}

interface Applied {
  kind: string;
  namespace: string | undefined;
  name: string;
  /** "operator": made by `kubectl create` from the operator's own file; else the manifest file. */
  source: string;
  keys: string[];
}

/** What the documented steps leave in the cluster, failing on any step that replaces a Secret. */
function followDocumentedSteps(steps: string[]) {
  const cluster = new Map<string, Applied>();
  const applied: string[] = [];
  const problems: string[] = [];
  const id = (kind: string, ns: string | undefined, name: string) => `${kind}/${ns ?? ""}/${name}`;
  for (const step of steps) {
    const args = step.split(/\s+/).slice(1);
    const nsAt = args.findIndex((a) => a === "-n" || a === "--namespace");
    const ns = nsAt >= 0 ? args.splice(nsAt, 2)[1] : undefined;
    if (args[0] === "apply" && args[1] === "-f") {
      const target = args[2]!.replace(/\/$/, "");
      const files = k8sByFile.has(target)
        ? [target]
        : [...k8sByFile.keys()].filter((f) => f.startsWith(`${target}/`));
      expect(files.length, `${step}: applies a file under deploy/k8s`).toBeGreaterThan(0);
      for (const f of files) {
        applied.push(f);
        for (const d of k8sByFile.get(f)!) {
          const meta = d["metadata"] as Obj;
          const key = id(d["kind"] as string, (meta["namespace"] as string) ?? ns, meta["name"] as string);
          const before = cluster.get(key);
          if (d["kind"] === "Secret" && before)
            problems.push(`${step} replaces Secret ${meta["name"]} (made by ${before.source})`);
          const data = { ...(d["data"] as Obj), ...(d["stringData"] as Obj) };
          cluster.set(key, {
            kind: d["kind"] as string,
            namespace: (meta["namespace"] as string) ?? ns,
            name: meta["name"] as string,
            source: f,
            keys: Object.keys(data),
          });
        }
      }
    } else if (args[0] === "create" && args[1] === "secret" && args[2] === "generic") {
      const name = args[3]!;
      const keys = args
        .filter((a) => a.startsWith("--from-file="))
        .map((a) => a.slice("--from-file=".length).split("=")[0]!);
      expect(cluster.has(id("Namespace", undefined, ns!)), `${step}: its namespace exists first`).toBe(true);
      cluster.set(id("Secret", ns, name), { kind: "Secret", namespace: ns, name, source: "operator", keys });
    } else {
      throw new Error(`an unexpected documented step: ${step}`);
    }
  }
  return { cluster, applied, problems, id };
}

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
      ["ConfigMap", "DaemonSet", "Namespace", "PodMonitor", "ServiceAccount"].sort(),
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
    expect(runtimeText).toContain(`AITBC_METRICS_PORT=${port}`);
    expect(runtimeText).toMatch(new RegExp(`^EXPOSE ${port}\\b`, "m"));
    expect(runtimeText).toMatch(new RegExp(`^HEALTHCHECK .*${OPS_PATHS.live}`, "m"));
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
    expect(runtimeText).toMatch(/^STOPSIGNAL SIGTERM$/m);
    expect(service["stop_signal"]).toBe("SIGTERM");
  });

  it("the image runs the built CLI without npx, as the user the manifests expect, who owns the state path", () => {
    const entry = JSON.parse(runtimeText.match(/^ENTRYPOINT (.+)$/m)![1]!) as string[];
    expect(entry).toEqual(["node", "/app/bin/aitbc-native-miner.js"]);
    expect(existsSync(join(repoRoot, "bin", "aitbc-native-miner.js"))).toBe(true);
    expect(runtimeText).toMatch(/^COPY --from=build \/src\/dist \.\/dist$/m);
    expect(runtimeText).toMatch(/^COPY --from=build \/src\/bin \.\/bin$/m);
    expect(runtimeText).not.toMatch(/\bnpx\b/);
    const uid = Number(runtimeText.match(/^USER (\d+)/m)![1]);
    expect(uid).toBeGreaterThan(0); // never root
    const sc = pod["securityContext"] as Obj;
    expect(sc).toMatchObject({ runAsNonRoot: true, runAsUser: uid });
    const stateDir = runtimeText.match(/AITBC_STATE_DIR=(\S+)/)![1]!;
    expect(runtimeText).toMatch(new RegExp(`install -d -o ${uid} -g ${uid} -m 0700 ${stateDir}`));
    expect(runtimeText).toContain(`VOLUME ["${stateDir}"]`);
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
    const texts = [read("Dockerfile"), read("docker-compose.yml"), ...k8sFiles.map((f) => read(`k8s/${f}`))];
    for (const t of texts) expect(t).not.toMatch(/AITBC_API_KEY[:=\s]/);
    const env = Object.fromEntries((miner["env"] as Obj[]).map((e) => [e["name"], e["value"]]));
    const keyFile = env["AITBC_API_KEY_FILE"] as string;
    const mount = (miner["volumeMounts"] as Obj[]).find((m) =>
      keyFile.startsWith(`${m["mountPath"] as string}/`),
    )!;
    const volume = (pod["volumes"] as Obj[]).find((v) => v["name"] === mount["name"])!;
    expect((volume["secret"] as Obj)["secretName"]).toBe("aitbc-api-key");
    expect(keyFile.endsWith("/aitbc-api-key")).toBe(true);
    // Group-readable at most: the miner refuses a key file others can read.
    expect((volume["secret"] as Obj)["defaultMode"]).toBe(0o440);
    expect((service["environment"] as Record<string, string>)["AITBC_API_KEY_FILE"]).toBe(
      "/run/secrets/aitbc-api-key",
    );
    expect(service["secrets"]).toEqual(["aitbc-api-key"]);
  });
});

describe("the image computes on the GPU", () => {
  it("every base image is pinned to an exact version, never latest", () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const s of stages) {
      if (stages.some((o) => o.alias === s.from)) continue; // FROM an earlier stage
      expect(s.from, s.from).toMatch(/:\d+\.\d+\.\d+[^:@\s]*(@sha256:[0-9a-f]{64})?$/);
      expect(s.from).not.toMatch(/:latest\b/);
    }
  });

  it("runs on NVIDIA's CUDA runtime image, which carries libcudart and cuBLAS, with no toolchain", () => {
    const base = cudaImage(runtimeStage.from);
    expect(base, `runtime stage FROM ${runtimeStage.from}`).not.toBeNull();
    // `base` has libcudart only; `devel` adds nvcc, headers and static libraries to `runtime`.
    expect(base!.flavour).toBe("runtime");
    expect(runtimeText).not.toMatch(/apt-get install[^\n]*\b(g\+\+|gcc|cmake|ninja-build|cuda-nvcc)/);
    expect(runtimeText).not.toMatch(/\bnpm (ci|install)\b/);
  });

  it("the builder builds node-llama-cpp's CUDA backend for the datacenter GPUs, with the same CUDA and OS", () => {
    const runtime = cudaImage(runtimeStage.from)!;
    const builder = stages.find((s) =>
      s.instructions.some((i) => /^RUN .*aitbc-native-miner(\.js)? gpu build\b/.test(i)),
    );
    expect(builder, "a stage runs `aitbc-native-miner gpu build`").toBeDefined();
    // Built on one machine, run on others: no -march=native CPU code.
    expect(builder!.instructions.find((i) => /gpu build\b/.test(i))).toMatch(/--portable\b/);
    const devel = cudaImage(builder!.from);
    expect(devel, `builder FROM ${builder!.from}`).not.toBeNull();
    expect(devel!.flavour).toBe("devel"); // nvcc, cuBLAS headers
    // Compiled against the CUDA it runs with, linked against the glibc and libstdc++ it runs with.
    expect(devel!.version).toBe(runtime.version);
    expect(devel!.os).toBe(runtime.os);
    const steps = builder!.instructions;
    const build = steps.findIndex((i) => /^RUN .*gpu build\b/.test(i));
    expect(steps.findIndex((i) => /^RUN .*\bnpm ci\b/.test(i))).toBeLessThan(build);
    const arch = steps[build]!.match(/gpu build .*--arch[= ]"?([\d,; ]+)"?/)?.[1];
    expect(arch, `the --arch list in: ${steps[build]}`).toBeDefined();
    const archs = arch!
      .split(/[,;\s]+/)
      .filter(Boolean)
      .map(Number);
    // A100, H100/H200, B200 (what the prebuilt lacks), and the consumer cards the prebuilt covers.
    for (const a of [80, 90, 100, 86, 89, 120]) expect(archs, `sm_${a}`).toContain(a);
    // What the builder made reaches the runtime stage.
    const from = builder!.alias;
    expect(runtimeText).toMatch(new RegExp(`^COPY --from=${from} \\S*node_modules \\S*node_modules$`, "m"));
  });

  it.skipIf(!existsSync(cudaPrebuilt))(
    "its CUDA major is the one node-llama-cpp's CUDA backend links libcudart against",
    () => {
      const needed = neededLibraries(cudaPrebuilt);
      const readelf = spawnSync("readelf", ["-d", cudaPrebuilt], { encoding: "utf8" });
      if (readelf.status === 0) {
        const fromReadelf = [...readelf.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)];
        expect(needed).toEqual(fromReadelf.map((m) => m[1]));
      }
      const cudart = needed.find((n) => /^libcudart\.so\.\d+$/.test(n));
      expect(cudart, `DT_NEEDED: ${needed.join(", ")}`).toBeDefined();
      expect(needed).toContain(cudart!.replace("cudart", "cublas")); // cuBLAS: the runtime flavour
      const major = Number(cudart!.split(".").at(-1));
      expect(cudaImage(runtimeStage.from)!.major).toBe(major);
    },
  );

  it("docs/deploy.md names the images, the architectures and the driver branch this CUDA needs", () => {
    const runtime = cudaImage(runtimeStage.from)!;
    for (const s of stages) {
      const ref = s.from.replace(/@sha256:.*$/, "");
      if (cudaImage(ref)) expect(deployDoc, ref.replace(/^.*\//, "")).toContain(ref.replace(/^.*\//, ""));
    }
    // NVIDIA's minimum driver branch per CUDA major (minor-version compatibility table).
    const minimumDriver: Record<number, number> = { 12: 525, 13: 580 };
    expect(minimumDriver[runtime.major], `CUDA ${runtime.major} is in this table`).toBeDefined();
    expect(deployDoc).toContain(`R${minimumDriver[runtime.major]}`);
    const arch = stages
      .flatMap((s) => s.instructions)
      .map((i) => i.match(/gpu build .*--arch[= ]"?([\d,;]+)/)?.[1])
      .find(Boolean)!;
    expect(deployDoc).toContain(`--arch ${arch}`);
  });
});

describe("Compose asks for GPUs in a form Compose 1.28 and later read", () => {
  it("uses a device reservation with the gpu capability, not the `gpus:` key Compose 1.29 rejects", () => {
    expect(service["gpus"]).toBeUndefined();
    const devices = ((((service["deploy"] as Obj)?.["resources"] as Obj)?.["reservations"] as Obj)?.[
      "devices"
    ] ?? []) as Obj[];
    const gpu = devices.find((d) => (d["capabilities"] as string[] | undefined)?.includes("gpu"));
    expect(gpu, "deploy.resources.reservations.devices has capabilities: [gpu]").toBeDefined();
    expect(gpu!["driver"]).toBe("nvidia");
    expect(gpu!["count"]).toBe("all");
  });

  const compose1 = spawnSync("docker-compose", ["version", "--short"], { encoding: "utf8" });
  const v1 = compose1.status === 0 && /^1\.(2[89]|[3-9]\d)\./.test(compose1.stdout.trim());
  it.skipIf(!v1)("docker-compose 1.x (installed here) accepts the file", () => {
    // Throws with Compose's own message (e.g. "Unsupported config option") when it does not.
    execFileSync("docker-compose", ["-f", join(deploy, "docker-compose.yml"), "config", "-q"], {
      stdio: "pipe",
    });
  });
});

describe("the Kubernetes steps of docs/deploy.md, followed in order", () => {
  const steps = documentedKubectlSteps();

  it("never replace the API key Secret with a manifest's placeholder", () => {
    const { problems } = followDocumentedSteps(steps);
    expect(problems).toEqual([]);
    // Nor does applying the whole folder at any time: no manifest holds a Secret at all.
    expect(byKind("Secret")).toEqual([]);
  });

  it("apply every manifest, and leave the DaemonSet the Secret, key and ConfigMap it mounts", () => {
    const { cluster, applied, id } = followDocumentedSteps(steps);
    expect(new Set(applied)).toEqual(new Set(k8sByFile.keys()));
    const ns = (daemonset["metadata"] as Obj)["namespace"] as string;
    const volume = (pod["volumes"] as Obj[]).find((v) => v["secret"])!;
    const secret = cluster.get(id("Secret", ns, (volume["secret"] as Obj)["secretName"] as string));
    expect(secret, "the Secret the DaemonSet mounts exists").toBeDefined();
    expect(secret!.source).toBe("operator");
    const keyFile = (miner["env"] as Obj[]).find((e) => e["name"] === "AITBC_API_KEY_FILE")!["value"];
    expect(secret!.keys).toContain((keyFile as string).split("/").at(-1));
    const envFrom = (miner["envFrom"] as Obj[]).map((e) => (e["configMapRef"] as Obj)["name"]);
    for (const name of envFrom)
      expect(cluster.has(id("ConfigMap", ns, name as string)), name as string).toBe(true);
    // The Secret and ConfigMap come before the DaemonSet whose pods read them.
    const order = steps.map((s) => s.replace(/\s+/g, " "));
    const dsStep = order.findIndex((s) => s.includes("daemonset.yaml"));
    expect(order.findIndex((s) => s.includes("create secret"))).toBeLessThan(dsStep);
    expect(order.findIndex((s) => s.includes("config.yaml"))).toBeLessThan(dsStep);
  });

  it("would catch a manifest Secret applied after the real one", () => {
    // The check above can fail: a placeholder Secret in config.yaml, as there once was.
    const placeholder = {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "aitbc-api-key", namespace: "aitbc-miner" },
      stringData: { "aitbc-api-key": "REPLACE-ME" },
    };
    const original = k8sByFile.get("deploy/k8s/config.yaml")!;
    k8sByFile.set("deploy/k8s/config.yaml", [...original, placeholder]);
    try {
      expect(followDocumentedSteps(steps).problems).toEqual([
        expect.stringContaining("replaces Secret aitbc-api-key (made by operator)"),
      ]);
    } finally {
      k8sByFile.set("deploy/k8s/config.yaml", original);
    }
  });
});
