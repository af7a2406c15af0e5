// `gpu build`: the plan as a pure function (folder, cmake arguments, metadata, resume detection),
// the build run against a scripted cmake (progress, install, interruption, resume), and the CLI's
// dry run and refusals. Nothing here compiles llama.cpp.
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LlamaPaths } from "../../src/backends/llama/cuda-binaries.js";
import {
  type BuildEvent,
  type BuildPlanInput,
  cudaArchitecturesValue,
  normalizeArch,
  PLAN_FILE,
  parseArchList,
  parseProgress,
  planBuild,
  resumeState,
  runBuild,
} from "../../src/backends/llama/cuda-build.js";
import { runCli } from "../support/cli.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cuda-build-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function fakePaths(root: string): LlamaPaths {
  const llamaDir = join(root, "node-llama-cpp", "llama");
  return {
    packageDir: join(root, "node-llama-cpp"),
    version: "3.21.1",
    llamaDir,
    localBuildsDir: join(llamaDir, "localBuilds"),
    sourceDir: join(llamaDir, "llama.cpp"),
    bundle: join(llamaDir, "gitRelease.bundle"),
    builtinRelease: "v0.4.0",
    builtinRepo: "ggml-org/llama.cpp",
  };
}

function input(over: Partial<BuildPlanInput> = {}): BuildPlanInput {
  return {
    backend: "cuda",
    archs: ["90"],
    paths: fakePaths("/nm"),
    release: { repo: "ggml-org/llama.cpp", release: "v0.4.0" },
    arch: "x64",
    platformInfo: { name: "Ubuntu", version: "22.04" },
    node: { execPath: "/opt/node/bin/node", version: "20.18.0" },
    nodeApiInclude: ["/nm/node-api-headers/include", "/nm/node-addon-api"],
    cmakeJsVersion: "8.0.0",
    generator: "Ninja",
    jobs: 16,
    envCmakeOptions: new Map(),
    cuda: {
      nvcc: "/usr/local/cuda-13.0/bin/nvcc",
      root: "/usr/local/cuda-13.0",
      version: "13.0",
      cublas: null,
      rpath: [],
    },
    flashAttention: true,
    portable: false,
    ...over,
  };
}

const defines = (args: string[]) =>
  Object.fromEntries(
    args
      .filter((a) => a.startsWith("-D"))
      .map((a) => [a.slice(2, a.indexOf("=")), a.slice(a.indexOf("=") + 1)]),
  );

describe("architectures", () => {
  it("accepts SM numbers, compute capabilities and prefixed names", () => {
    expect(["90", "9.0", "sm_90", "compute_90", "90a", "sm_120a", "100f", "12.1"].map(normalizeArch)).toEqual(
      ["90", "90", "90", "90", "90a", "120a", "100f", "121"],
    );
    expect(["", "abc", "35", "9", "sm_9x", "90b"].map(normalizeArch)).toEqual([
      null,
      null,
      null,
      null,
      null,
      null,
    ]);
    expect(parseArchList("100, 90,9.0")).toEqual(["90", "100"]);
    expect(parseArchList(["9.0", "9.0", "8.6"])).toEqual(["86", "90"]);
    expect(() => parseArchList("90,foo")).toThrow(/"foo" is not a CUDA architecture/);
    expect(cudaArchitecturesValue(["90", "100", "120a"])).toBe("90-real;100-real;120a-real");
  });
});

describe("planBuild", () => {
  it("puts a CUDA build where getLlama looks first, with node-llama-cpp's options plus the architectures", () => {
    const plan = planBuild(input({ archs: ["90", "100"] }));
    expect(plan.folderName).toBe("linux-x64-cuda");
    expect(plan.outDir).toBe("/nm/node-llama-cpp/llama/localBuilds/linux-x64-cuda");
    expect(plan.releaseDir).toBe(`${plan.outDir}/Release`);
    expect(plan.configureArgs.slice(0, 7)).toEqual([
      "-S",
      "/nm/node-llama-cpp/llama",
      "-B",
      plan.outDir,
      "-G",
      "Ninja",
      "--no-warn-unused-cli",
    ]);
    expect(defines(plan.configureArgs)).toMatchObject({
      CMAKE_LIBRARY_OUTPUT_DIRECTORY: plan.releaseDir,
      CMAKE_JS_INC: "/nm/node-api-headers/include;/nm/node-addon-api",
      NODE_RUNTIME: "node",
      NLC_VARIANT: "cuda.v0.4.0",
      GGML_CUDA: "1",
      CMAKE_CUDA_COMPILER: "/usr/local/cuda-13.0/bin/nvcc",
      CMAKE_CUDA_ARCHITECTURES: "90-real;100-real",
      GGML_CUDA_FA: "ON",
      GGML_NATIVE: "ON",
      LLAMA_CURL: "OFF",
      CMAKE_CXX_FLAGS: "-DBUILDING_NODE_EXTENSION",
    });
    expect(plan.buildArgs).toEqual(["--build", plan.outDir, "--config", "Release", "--parallel", "16"]);
    expect(plan.metadata.buildOptions).toEqual({
      customCmakeOptions: {},
      progressLogs: true,
      platform: "linux",
      platformInfo: { name: "Ubuntu", version: "22.04" },
      arch: "x64",
      gpu: "cuda",
      llamaCpp: { repo: "ggml-org/llama.cpp", release: "v0.4.0" },
    });
    expect(plan.nodeBinDir).toBe("/opt/node/bin");
  });

  it("links cuBLAS from Python's nvidia wheels and writes the library folders into the RUNPATH", () => {
    const cuda = {
      nvcc: "/usr/local/cuda/bin/nvcc",
      root: "/usr/local/cuda",
      version: "13.0",
      cublas: {
        lib: "/py/nvidia/cu13/lib/libcublas.so.13",
        libLt: "/py/nvidia/cu13/lib/libcublasLt.so.13",
        include: "/py/nvidia/cu13/include",
      },
      rpath: ["/usr/local/cuda/lib64", "/usr/lib/x86_64-linux-gnu", "/py/nvidia/cu13/lib"],
    };
    const d = defines(planBuild(input({ cuda, flashAttention: false })).configureArgs);
    expect(d).toMatchObject({
      CUDA_cublas_LIBRARY: cuda.cublas.lib,
      CUDA_cublasLt_LIBRARY: cuda.cublas.libLt,
      CMAKE_CUDA_FLAGS: "-I/py/nvidia/cu13/include",
      CMAKE_CXX_FLAGS: "-DBUILDING_NODE_EXTENSION -I/py/nvidia/cu13/include",
      CMAKE_SHARED_LINKER_FLAGS: "-Wl,-rpath,/usr/local/cuda/lib64 -Wl,-rpath,/py/nvidia/cu13/lib",
      GGML_CUDA_FA: "OFF",
    });
  });

  it("plans the CPU backend into linux-x64, and portable code on request", () => {
    const cpu = planBuild(input({ backend: "cpu", archs: [], cuda: null }));
    expect(cpu.folderName).toBe("linux-x64");
    expect(cpu.cudaArchitectures).toBeNull();
    const d = defines(cpu.configureArgs);
    expect(d["GGML_CUDA"]).toBeUndefined();
    expect(d["NLC_VARIANT"]).toBe("v0.4.0");
    expect(cpu.metadata.buildOptions["gpu"]).toBe(false);
    expect(defines(planBuild(input({ portable: true })).configureArgs)).toMatchObject({
      GGML_NATIVE: "OFF",
      GGML_CPU_ALL_VARIANTS: "ON",
      GGML_BACKEND_DL: "ON",
    });
    expect(() => planBuild(input({ cuda: null }))).toThrow(/CUDA toolchain/);
    expect(() => planBuild(input({ archs: [] }))).toThrow(/architecture/);
  });

  it("follows cmake options from the environment into the folder name, the arguments and the metadata", () => {
    const plan = planBuild(input({ envCmakeOptions: new Map([["GGML_CUDA_FA", "OFF"]]) }));
    expect(plan.folderName).toMatch(/^linux-x64-cuda-[0-9a-z]+$/);
    expect(plan.configureArgs).toContain("-DGGML_CUDA_FA=OFF");
    expect(plan.metadata.buildOptions["customCmakeOptions"]).toEqual({ GGML_CUDA_FA: "OFF" });
  });

  it("fingerprints what is built, not how many jobs build it or which node runs cmake", () => {
    const a = planBuild(input());
    expect(planBuild(input({ jobs: 2, node: { execPath: "/x/node", version: "22.1.0" } })).fingerprint).toBe(
      a.fingerprint,
    );
    expect(planBuild(input({ archs: ["100"] })).fingerprint).not.toBe(a.fingerprint);
    expect(planBuild(input({ flashAttention: false })).fingerprint).not.toBe(a.fingerprint);
  });
});

describe("progress and resume detection", () => {
  it("reads ninja's and make's progress", () => {
    expect(parseProgress("[12/476] Building CUDA object ggml/src/ggml-cuda/x.cu.o")).toEqual({
      done: 12,
      total: 476,
    });
    expect(parseProgress("[ 42%] Building CXX object src/llama.cpp.o")).toEqual({ done: 42, total: 100 });
    expect(parseProgress("-- Configuring done")).toBeNull();
  });

  it("tells a fresh folder, this build part-way or done, and another build's folder", async () => {
    const out = join(dir, "resume", "linux-x64-cuda");
    const plan = { outDir: out, fingerprint: "abc" };
    expect(await resumeState(plan)).toBe("fresh");
    await mkdir(out, { recursive: true });
    expect(await resumeState(plan)).toBe("fresh");
    await writeFile(join(out, "CMakeCache.txt"), "");
    expect(await resumeState(plan)).toBe("other"); // someone's build tree, not ours
    await writeFile(join(out, PLAN_FILE), JSON.stringify({ fingerprint: "abc" }));
    expect(await resumeState(plan)).toBe("fresh"); // our configure stopped before generating
    await writeFile(join(out, "build.ninja"), "");
    expect(await resumeState(plan)).toBe("resume");
    await writeFile(join(out, "buildDone.status"), "");
    expect(await resumeState(plan)).toBe("done");
    expect(await resumeState({ ...plan, fingerprint: "def" })).toBe("other");
  });
});

/** A cmake stand-in: configure writes CMakeCache.txt and build.ninja; --build prints ninja progress, then fails
 *  once if `fail` exists, waits for a signal if `hang` exists, else lays out Release/. */
async function fakeCmake(root: string): Promise<string> {
  const script = join(root, "cmake");
  await writeFile(
    script,
    `#!/bin/sh
calls="${root}/calls"
if [ "$1" = "--build" ]; then
  out="$2"; echo build >> "$calls"
  # Markers go before the progress line: the test interrupts as soon as it sees that line.
  if [ -f "${root}/hang" ]; then rm "${root}/hang"; echo "[1/2] Building CXX object addon.cpp.o"; exec sleep 300; fi
  echo "[1/2] Building CXX object addon.cpp.o"
  if [ -f "${root}/fail" ]; then rm "${root}/fail"; echo "FAILED: addon.cpp.o"; echo "addon.cpp:1: error: boom" >&2; exit 1; fi
  mkdir -p "$out/Release" "$out/bin"
  echo addon > "$out/Release/llama-addon.node"; echo lib > "$out/Release/libggml-base.so"; echo tool > "$out/bin/tool"
  echo "[2/2] Linking CXX shared module Release/llama-addon.node"
else
  while [ "$1" != "-B" ]; do shift; done
  mkdir -p "$2"; : > "$2/CMakeCache.txt"; : > "$2/build.ninja"; echo configure >> "$calls"; echo "-- Configuring done"
fi
`,
  );
  await chmod(script, 0o755);
  return script;
}

describe("runBuild with a scripted cmake", () => {
  it("configures, compiles with progress, installs the local build, then stops being needed", async () => {
    const root = join(dir, "run-ok");
    await mkdir(root, { recursive: true });
    const cmake = await fakeCmake(root);
    const paths = fakePaths(root);
    await mkdir(paths.llamaDir, { recursive: true });
    const plan = planBuild(input({ paths }));
    const events: BuildEvent[] = [];
    const r = await runBuild(plan, paths, { cmake, onEvent: (e) => events.push(e) });
    expect(r).toMatchObject({ state: "built", resumed: false, releaseDir: plan.releaseDir });
    expect(r.files.map((f) => f.name)).toEqual([
      "_nlcBuildMetadata.json",
      "libggml-base.so",
      "llama-addon.node",
      "tool",
    ]);
    expect(events.filter((e) => e.kind !== "line")).toEqual([
      { kind: "stage", stage: "configure" },
      { kind: "stage", stage: "compile", resumed: false },
      { kind: "progress", done: 1, total: 2 },
      { kind: "progress", done: 2, total: 2 },
      { kind: "stage", stage: "install" },
    ]);
    expect(JSON.parse(await readFile(join(plan.releaseDir, "_nlcBuildMetadata.json"), "utf8"))).toEqual(
      plan.metadata,
    );
    expect(await readFile(join(plan.outDir, "buildDone.status"), "utf8")).toBe("");
    expect(JSON.parse(await readFile(join(paths.llamaDir, "lastBuild.json"), "utf8"))).toEqual({
      folderName: "linux-x64-cuda",
    });
    const again = await runBuild(plan, paths, { cmake, onEvent: () => {} });
    expect(again.state).toBe("already-built");
    expect((await readFile(join(root, "calls"), "utf8")).trim().split("\n")).toEqual(["configure", "build"]);
  });

  it("after a failure or an interruption, the next run resumes the build folder without configuring", async () => {
    const root = join(dir, "run-resume");
    await mkdir(root, { recursive: true });
    const cmake = await fakeCmake(root);
    const paths = fakePaths(root);
    await mkdir(paths.llamaDir, { recursive: true });
    const plan = planBuild(input({ paths }));
    await writeFile(join(root, "fail"), "");
    const failed = await runBuild(plan, paths, { cmake, onEvent: () => {} }).catch((e: unknown) => e);
    expect(failed).toMatchObject({
      name: "BuildError",
      message: expect.stringMatching(/cmake --build failed \(exit 1\)/),
    });
    expect((failed as { tail: string[] }).tail).toEqual(
      expect.arrayContaining(["FAILED: addon.cpp.o", "addon.cpp:1: error: boom"]),
    );
    expect(await resumeState(plan)).toBe("resume");
    await writeFile(join(root, "hang"), "");
    const stop = new AbortController();
    const interrupted = await runBuild(plan, paths, {
      cmake,
      signal: stop.signal,
      onEvent: (e) => {
        if (e.kind === "progress") stop.abort();
      },
    }).catch((e: unknown) => e);
    expect((interrupted as Error).message).toMatch(/interrupted: run the same command again to resume/);
    const events: BuildEvent[] = [];
    const done = await runBuild(plan, paths, { cmake, onEvent: (e) => events.push(e) });
    expect(done).toMatchObject({ state: "built", resumed: true });
    expect(events[0]).toEqual({ kind: "stage", stage: "compile", resumed: true });
    expect((await readFile(join(root, "calls"), "utf8")).trim().split("\n")).toEqual([
      "configure",
      "build",
      "build",
      "build",
    ]);
  });
});

describe("aitbc-native-miner gpu build (CLI)", () => {
  it("prints the CPU plan with --dry-run and builds nothing", async () => {
    const r = await runCli(["gpu", "build", "--cpu", "--dry-run", "--json", "--jobs", "3"]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { plan: { folderName: string; buildArgs: string[]; outDir: string } };
    expect(out.plan.folderName).toBe("linux-x64");
    expect(out.plan.buildArgs).toContain("3");
    expect(out.plan.outDir).toMatch(/node-llama-cpp[/\\]llama[/\\]localBuilds[/\\]linux-x64$/);
  });

  it("plans a CUDA build for --arch with a toolkit from --cuda-root, cuBLAS in the toolkit", async () => {
    const cuda = join(dir, "toolkit");
    await mkdir(join(cuda, "bin"), { recursive: true });
    await mkdir(join(cuda, "lib64"), { recursive: true });
    await writeFile(
      join(cuda, "bin", "nvcc"),
      `#!/bin/sh\ncase "$*" in *--version*) echo "Cuda compilation tools, release 13.0, V13.0.88";; *--list-gpu-arch*) printf "compute_75\\ncompute_80\\ncompute_90\\ncompute_100\\n";; *--dryrun*) echo "#$ _HERE_=${cuda}/bin" >&2;; esac\n`,
    );
    await chmod(join(cuda, "bin", "nvcc"), 0o755);
    for (const f of ["libcublas.so.13", "libcublasLt.so.13"]) await writeFile(join(cuda, "lib64", f), "");
    const r = await runCli(["gpu", "build", "--arch", "90,100", "--cuda-root", cuda, "--dry-run", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const { plan } = JSON.parse(r.stdout) as { plan: { folderName: string; configureArgs: string[] } };
    expect(plan.folderName).toBe("linux-x64-cuda");
    expect(defines(plan.configureArgs)).toMatchObject({
      CMAKE_CUDA_COMPILER: join(cuda, "bin", "nvcc"),
      CMAKE_CUDA_ARCHITECTURES: "90-real;100-real",
      CMAKE_SHARED_LINKER_FLAGS: `-Wl,-rpath,${join(cuda, "lib64")}`,
    });
    // An architecture this nvcc cannot compile is refused before anything runs.
    const old = await runCli(["gpu", "build", "--arch", "70,90", "--cuda-root", cuda, "--dry-run"]);
    expect(old.code).toBe(1);
    expect(old.stderr).toContain("nvcc 13.0 cannot compile for sm_70 (it knows 75, 80, 90, 100)");
  });

  it("refuses a CUDA build without nvcc, saying where it looked and what to do", async () => {
    const empty = join(dir, "no-cuda");
    await mkdir(empty, { recursive: true });
    const r = await runCli(["gpu", "build", "--arch", "90", "--cuda-root", empty, "--dry-run"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`no CUDA compiler (nvcc): looked at ${join(empty, "bin", "nvcc")}`);
    expect(r.stderr).toMatch(/--cuda-root/);
    expect(r.stderr).toMatch(/--cpu/);
  });

  it("refuses an architecture it does not know, as a usage error", async () => {
    const r = await runCli(["gpu", "build", "--arch", "90,35", "--dry-run"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('"35" is not a CUDA architecture');
  });
});
