// Reading a CUDA library's architectures (ELF sections, .nv_fatbin headers, DT_NEEDED) and the
// verdict on whether a GPU + driver can run it: on the prebuilt libraries npm installs, and on
// small synthetic and cc-built files for the edge cases.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildFolderName, cudaBackendCandidates } from "../../src/backends/llama/cuda-binaries.js";
import { cudaBinaryVerdict, cudaVersionForPtxIsa } from "../../src/gpu/cuda-compat.js";
import { ElfError, elfSections, neededLibraries } from "../../src/gpu/elf.js";
import { fatbinArchitectures } from "../../src/gpu/fatbin.js";
import { dynamicSections, elf64, fatbinContainer } from "./fixtures/cuda/synthetic-elf.js";

const root = join(import.meta.dirname, "..", "..");
const cudaBins = join(root, "node_modules", "@node-llama-cpp", "linux-x64-cuda", "bins", "linux-x64-cuda");
const prebuilt = join(cudaBins, "libggml-cuda.so");
const fallback = join(
  root,
  "node_modules",
  "@node-llama-cpp",
  "linux-x64-cuda-ext",
  "bins",
  "linux-x64-cuda",
  "fallback",
  "libggml-cuda.so",
);
const haveCc = spawnSync("cc", ["--version"]).status === 0;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cuda-binary-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, data: Buffer | string): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, data);
  return p;
}

// Present wherever `npm ci` ran on linux-x64 glibc (optional dependencies of node-llama-cpp).
describe.skipIf(!existsSync(prebuilt))("the prebuilt CUDA 13 library of node-llama-cpp 3.21.1", () => {
  it("holds SASS for sm_86, sm_89, sm_120a, sm_121a and PTX 9.1 for sm_75, sm_80, sm_90", async () => {
    const fb = await fatbinArchitectures(prebuilt);
    expect(fb).not.toBeNull();
    expect(fb!.sass).toEqual([86, 89, 120, 121]);
    expect(fb!.sassTargets).toEqual([
      { arch: 86, variant: "" },
      { arch: 89, variant: "" },
      { arch: 120, variant: "a" },
      { arch: 121, variant: "a" },
    ]);
    expect(fb!.ptx).toEqual([75, 80, 90].map((arch) => ({ arch, isaVersion: "9.1", variant: "" })));
    expect(fb!.entries).toBe(143 * 7);
  });

  it("links the CUDA 13 runtime and cuBLAS", async () => {
    const needed = await neededLibraries(prebuilt);
    expect(needed).toEqual(expect.arrayContaining(["libcudart.so.13", "libcublas.so.13", "libcuda.so.1"]));
  });

  it("cannot run on an H200 with driver 580 (CUDA 13.0), runs by JIT under a 13.1 driver", async () => {
    const fb = (await fatbinArchitectures(prebuilt))!;
    const bin = { ...fb, runtimeMajor: 13, library: "libggml-cuda.so" };
    const h200 = { computeCapability: "9.0", name: "NVIDIA H200" };
    const v130 = cudaBinaryVerdict(bin, { ...h200, driverCudaVersion: "13.0" });
    expect(v130).toMatchObject({ runs: false, via: null, certain: true });
    expect(v130.reason).toBe(
      "libggml-cuda.so has machine code for sm_86, sm_89, sm_120a, sm_121a and PTX 9.1 for " +
        "sm_75, sm_80, sm_90; PTX 9.1 needs a CUDA 13.1 driver, this one is 13.0: " +
        "no kernel can run on this NVIDIA H200 (cc 9.0)",
    );
    expect(cudaBinaryVerdict(bin, { ...h200, driverCudaVersion: "13.1" })).toMatchObject({
      runs: true,
      via: "ptx-jit",
    });
    // Machine code where it exists: an RTX 4090 (8.9), an RTX 5090 (12.0, sm_120a is exact).
    const ada = cudaBinaryVerdict(bin, { computeCapability: "8.9", driverCudaVersion: "13.0" });
    expect(ada).toMatchObject({ runs: true, via: "sass" });
    expect(ada.reason).toContain("sm_89");
    expect(cudaBinaryVerdict(bin, { computeCapability: "12.0", driverCudaVersion: "13.0" }).via).toBe("sass");
    // An A100 (8.0) has only PTX 9.1 to go on; a CUDA 12 driver cannot even start the runtime.
    expect(cudaBinaryVerdict(bin, { computeCapability: "8.0", driverCudaVersion: "13.0" }).runs).toBe(false);
    const old = cudaBinaryVerdict(bin, { computeCapability: "8.9", driverCudaVersion: "12.4" });
    expect(old).toMatchObject({ runs: false, via: null });
    expect(old.reason).toContain("CUDA 13 runtime");
  });
});

describe.skipIf(!existsSync(fallback))("the prebuilt CUDA 12 fallback", () => {
  it("holds SASS for sm_86 and PTX 8.4 for sm_50 to sm_80, linking CUDA 12", async () => {
    const fb = (await fatbinArchitectures(fallback))!;
    expect(fb.sass).toEqual([86]);
    expect(fb.ptx.map((p) => `${p.arch}@${p.isaVersion}`)).toEqual([
      "50@8.4",
      "61@8.4",
      "70@8.4",
      "75@8.4",
      "80@8.4",
    ]);
    expect(await neededLibraries(fallback)).toContain("libcudart.so.12");
    // An H200 with a CUDA 13.0 driver would JIT its PTX 8.4 (if libcudart.so.12 were there).
    const v = cudaBinaryVerdict(
      { ...fb, runtimeMajor: 12 },
      { computeCapability: "9.0", driverCudaVersion: "13.0" },
    );
    expect(v).toMatchObject({ runs: true, via: "ptx-jit" });
  });
});

describe("ELF reading", () => {
  it("names sections and reads DT_NEEDED of a synthetic shared object", async () => {
    const [dynstr, dynamic] = dynamicSections(["libcudart.so.13", "libc.so.6"], 1);
    const p = await file("dyn.so", elf64([dynstr, dynamic]));
    expect((await elfSections(p)).map((s) => s.name)).toEqual(["", ".dynstr", ".dynamic", ".shstrtab"]);
    expect(await neededLibraries(p)).toEqual(["libcudart.so.13", "libc.so.6"]);
    expect(await fatbinArchitectures(p)).toBeNull();
  });

  it.skipIf(!haveCc)("reads a cc-built library: its NEEDED entries, and no .nv_fatbin", async () => {
    const src = await file("m.c", "#include <math.h>\ndouble f(double x) { return cos(x); }\n");
    const so = join(dir, "libm-user.so");
    const args = ["-shared", "-fPIC", "-o", so, src, "-Wl,--no-as-needed", "-lm"];
    const r = spawnSync("cc", args, { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    expect(await neededLibraries(so)).toEqual(expect.arrayContaining(["libm.so.6", "libc.so.6"]));
    expect(await fatbinArchitectures(so)).toBeNull();
  });

  it("refuses what is not ELF64 little-endian, with a typed error", async () => {
    const cases: Array<[string, Buffer, string]> = [
      ["text.so", Buffer.from("#!/bin/sh\necho not a library\n".repeat(4)), "not_elf"],
      ["tiny.so", Buffer.from("ab"), "not_elf"],
      ["empty.so", Buffer.alloc(0), "not_elf"],
      [
        "elf32.so",
        Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1]), Buffer.alloc(60)]),
        "not_elf64",
      ],
      [
        "be.so",
        Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 2, 1]), Buffer.alloc(60)]),
        "not_little_endian",
      ],
      ["short.so", Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), "truncated"],
    ];
    for (const [name, data, code] of cases) {
      const p = await file(name, data);
      const err = await fatbinArchitectures(p).catch((e: unknown) => e);
      expect(err, name).toBeInstanceOf(ElfError);
      expect((err as ElfError).code, name).toBe(code);
      expect((err as ElfError).message).toContain(p);
    }
  });

  it("reports a file cut short (section table or fatbin past its end) as truncated", async () => {
    const whole = elf64([
      { name: ".nv_fatbin", type: 1, data: fatbinContainer([{ kind: "sass", arch: 90 }]) },
    ]);
    const noTable = await file("cut-table.so", whole.subarray(0, whole.length - 100));
    await expect(neededLibraries(noTable)).rejects.toMatchObject({ code: "truncated" });
    // Keep the table, lose the fatbin's bytes: point the section past the end.
    const lying = Buffer.from(whole);
    const shoff = Number(lying.readBigUInt64LE(0x28));
    lying.writeBigUInt64LE(BigInt(whole.length * 2), shoff + 64 + 0x20); // section 1's size
    await expect(fatbinArchitectures(await file("cut-fatbin.so", lying))).rejects.toMatchObject({
      code: "truncated",
    });
  });
});

describe(".nv_fatbin walking", () => {
  it("reads variants, ISA versions, padding between containers and every header size", async () => {
    const a = fatbinContainer([
      { kind: "ptx", arch: 90, version: [9, 1] },
      { kind: "sass", arch: 86, payload: 13 },
      { kind: "sass", arch: 90, variant: "a", headerSize: 64 },
    ]);
    const b = fatbinContainer([
      { kind: "sass", arch: 100, variant: "f", headerSize: 112 },
      { kind: "ptx", arch: 80, version: [8, 4], headerSize: 88 },
      { kind: "sass", arch: 120, variant: "a", headerSize: 104 },
      { kind: "ptx", arch: 90, version: [9, 1] }, // same target again: listed once
    ]);
    const section = Buffer.concat([a, Buffer.alloc(8 - (a.length % 8) + 8), b]);
    const p = await file("fat.so", elf64([{ name: ".nv_fatbin", type: 1, data: section }]));
    const fb = await fatbinArchitectures(p);
    expect(fb).toEqual({
      sass: [86, 90, 100, 120],
      sassTargets: [
        { arch: 86, variant: "" },
        { arch: 90, variant: "a" },
        { arch: 100, variant: "f" },
        { arch: 120, variant: "a" },
      ],
      ptx: [
        { arch: 80, isaVersion: "8.4", variant: "" },
        { arch: 90, isaVersion: "9.1", variant: "" },
      ],
      entries: 7,
    });
  });

  it("gives empty lists for an empty section and fails on an entry that overruns its container", async () => {
    const empty = await file("empty-fat.so", elf64([{ name: ".nv_fatbin", type: 1, data: Buffer.alloc(0) }]));
    expect(await fatbinArchitectures(empty)).toEqual({ sass: [], ptx: [], sassTargets: [], entries: 0 });
    const bad = fatbinContainer([{ kind: "sass", arch: 90 }]);
    bad.writeBigUInt64LE(1n << 20n, 16 + 8); // the entry claims a 1 MiB payload
    const p = await file("bad-fat.so", elf64([{ name: ".nv_fatbin", type: 1, data: bad }]));
    await expect(fatbinArchitectures(p)).rejects.toMatchObject({ code: "malformed" });
  });
});

describe("cudaBinaryVerdict", () => {
  const prebuiltLike = {
    sass: [86, 89, 120, 121],
    sassTargets: [
      { arch: 86, variant: "" as const },
      { arch: 89, variant: "" as const },
      { arch: 120, variant: "a" as const },
      { arch: 121, variant: "a" as const },
    ],
    ptx: [{ arch: 90, isaVersion: "9.1" }],
  };
  const table: Array<
    [string, Parameters<typeof cudaBinaryVerdict>[0], string, string | null, boolean, string | null]
  > = [
    ["H200, driver 13.0, prebuilt", prebuiltLike, "9.0", "13.0", false, null],
    ["H200, driver 13.1, prebuilt", prebuiltLike, "9.0", "13.1", true, "ptx-jit"],
    ["H100, driver 13.2, prebuilt", prebuiltLike, "9.0", "13.2", true, "ptx-jit"],
    ["RTX 4090 8.9, prebuilt", prebuiltLike, "8.9", "13.0", true, "sass"],
    ["RTX 3090 8.6, prebuilt", prebuiltLike, "8.6", "12.9", true, "sass"],
    ["Jetson Orin 8.7 runs sm_86 code", prebuiltLike, "8.7", "13.0", true, "sass"],
    ["A100 8.0, prebuilt: only PTX for 9.0", prebuiltLike, "8.0", "13.1", false, null],
    ["RTX 5090 12.0: sm_120a is exact", prebuiltLike, "12.0", "13.0", true, "sass"],
    ["DGX Spark 12.1: sm_121a", prebuiltLike, "12.1", "13.0", true, "sass"],
    ["B200 10.0: no sm_100, PTX 9.1 for 9.0 under 13.1", prebuiltLike, "10.0", "13.1", true, "ptx-jit"],
    ["local build sm_90, H200", { sass: [90], ptx: [] }, "9.0", "13.0", true, "sass"],
    ["local build sm_90, unknown driver", { sass: [90], ptx: [] }, "9.0", null, true, "sass"],
    ["local build sm_90, B200: no", { sass: [90], ptx: [] }, "10.0", "13.0", false, null],
    [
      "sm_90a only on cc 9.0",
      { sass: [90], sassTargets: [{ arch: 90, variant: "a" }], ptx: [] },
      "9.0",
      "13.0",
      true,
      "sass",
    ],
    ["sm_80 runs on cc 8.6 (same major)", { sass: [80], ptx: [] }, "8.6", "12.4", true, "sass"],
    ["sm_86 does not run on cc 8.0", { sass: [86], ptx: [] }, "8.0", "12.4", false, null],
    [
      "sm_120a not on 12.1",
      { sass: [120], sassTargets: [{ arch: 120, variant: "a" }], ptx: [] },
      "12.1",
      "13.0",
      false,
      null,
    ],
    [
      "sm_120f on 12.1",
      { sass: [120], sassTargets: [{ arch: 120, variant: "f" }], ptx: [] },
      "12.1",
      "13.0",
      true,
      "sass",
    ],
    [
      "compute_90a PTX not on 10.0",
      { sass: [], ptx: [{ arch: 90, isaVersion: "8.0", variant: "a" }] },
      "10.0",
      "13.0",
      false,
      null,
    ],
    [
      "PTX 8.4 on H200 with 12.4",
      { sass: [], ptx: [{ arch: 80, isaVersion: "8.4" }] },
      "9.0",
      "12.4",
      true,
      "ptx-jit",
    ],
    [
      "PTX 8.6 needs 12.7, not 12.6",
      { sass: [], ptx: [{ arch: 80, isaVersion: "8.6" }] },
      "9.0",
      "12.6",
      false,
      null,
    ],
    ["nothing at all", { sass: [], ptx: [] }, "9.0", "13.0", false, null],
  ];
  for (const [name, bin, cc, driver, runs, via] of table) {
    it(name, () => {
      const v = cudaBinaryVerdict(bin, { computeCapability: cc, driverCudaVersion: driver });
      expect({ runs: v.runs, via: v.via }).toEqual({ runs, via });
      expect(v.reason).toMatch(/^[^\n]+$/);
    });
  }

  it("says when it cannot be sure, and why a runtime newer than the driver stops everything", () => {
    const unknown = cudaBinaryVerdict(prebuiltLike, { computeCapability: "9.0", driverCudaVersion: null });
    expect(unknown).toMatchObject({ runs: true, via: "ptx-jit", certain: false });
    expect(unknown.reason).toContain("CUDA 13.1 driver");
    const none = cudaBinaryVerdict(
      { sass: [86], ptx: [] },
      { computeCapability: "9.0", driverCudaVersion: "13.0" },
    );
    expect(none.reason).toContain("gpu build");
    const bad = cudaBinaryVerdict(
      { sass: [90], ptx: [] },
      { computeCapability: "n/a", driverCudaVersion: null },
    );
    expect(bad.runs).toBe(false);
  });

  it("maps PTX ISA versions to the CUDA release that first JITs them", () => {
    expect(cudaVersionForPtxIsa("8.4")).toEqual({ cuda: "12.4", exact: true });
    expect(cudaVersionForPtxIsa("8.6")).toEqual({ cuda: "12.7", exact: true });
    expect(cudaVersionForPtxIsa("9.1")).toEqual({ cuda: "13.1", exact: true });
    expect(cudaVersionForPtxIsa("9.3")).toEqual({ cuda: "13.3", exact: false });
    expect(cudaVersionForPtxIsa("10.0")).toBeNull();
  });
});

describe("node-llama-cpp's CUDA backend candidates", () => {
  it("names local build folders the way node-llama-cpp 3.21.1 does", () => {
    const base = { platform: "linux", arch: "x64", repo: "ggml-org/llama.cpp", release: "v0.4.0" };
    const plain = { ...base, builtinRelease: "v0.4.0", customCmakeOptions: new Map<string, string>() };
    expect(buildFolderName({ ...plain, gpu: "cuda" })).toEqual({
      name: "linux-x64-cuda",
      nameWithoutOptions: "linux-x64-cuda",
      binVariant: "cuda.v0.4.0",
    });
    expect(buildFolderName({ ...plain, gpu: false }).name).toBe("linux-x64");
    // A cmake option set through NODE_LLAMA_CPP_CMAKE_OPTION_* moves the build to a hashed folder.
    const withOpt = buildFolderName({
      ...plain,
      gpu: "cuda",
      customCmakeOptions: new Map([["GGML_CUDA_FA", "OFF"]]),
    });
    expect(withOpt.name).toMatch(/^linux-x64-cuda-[0-9a-z]+$/);
    expect(withOpt.binVariant).toBe(
      `cuda.v0.4.0.${withOpt.name.slice("linux-x64-cuda-".length, "linux-x64-cuda-".length + 8)}`,
    );
    expect(buildFolderName({ ...plain, gpu: "cuda", release: "b4000" }).name).toBe(
      "linux-x64-cuda-release-b4000",
    );
  });

  const nlcFolderName = join(
    root,
    "node_modules/node-llama-cpp/dist/bindings/utils/getBuildFolderNameForBuildOptions.js",
  );
  it.skipIf(!existsSync(nlcFolderName))("agrees with node-llama-cpp's own folder naming", async () => {
    type Fn = (o: object) => Promise<{ withCustomCmakeOptions: string; binVariant: string }>;
    const mod = (await import(nlcFolderName)) as { getBuildFolderNameForBuildOptions: Fn };
    const cases: Array<{
      repo: string;
      release: string;
      opts: Array<[string, string]>;
      gpu: "cuda" | false;
    }> = [
      { repo: "ggml-org/llama.cpp", release: "v0.4.0", opts: [], gpu: "cuda" },
      { repo: "ggml-org/llama.cpp", release: "v0.4.0", opts: [["GGML_CUDA_FA", "OFF"]], gpu: "cuda" },
      {
        repo: "ggml-org/llama.cpp",
        release: "v0.4.0",
        opts: [
          ["B", "1"],
          ["A", "x y"],
        ],
        gpu: false,
      },
      { repo: "ggml-org/llama.cpp", release: "b4000", opts: [], gpu: "cuda" },
      { repo: "a b/c", release: "x y", opts: [], gpu: "cuda" },
    ];
    for (const c of cases) {
      const theirs = await mod.getBuildFolderNameForBuildOptions({
        platform: "linux",
        arch: "x64",
        gpu: c.gpu,
        llamaCpp: { repo: c.repo, release: c.release },
        customCmakeOptions: new Map(c.opts),
      });
      const ours = buildFolderName({
        platform: "linux",
        arch: "x64",
        gpu: c.gpu,
        repo: c.repo,
        release: c.release,
        builtinRelease: "v0.4.0",
        customCmakeOptions: new Map(c.opts),
      });
      expect({ name: ours.name, binVariant: ours.binVariant }).toEqual({
        name: theirs.withCustomCmakeOptions,
        binVariant: theirs.binVariant,
      });
    }
  });

  it.skipIf(!existsSync(prebuilt) || process.platform !== "linux")(
    "lists the prebuilt and its CUDA 12 fallback, in that order, when no local build exists",
    async () => {
      const c = await cudaBackendCandidates({ env: {} });
      const prebuilts = c.filter((x) => x.source !== "localBuild");
      expect(prebuilts.map((x) => x.source)).toEqual(
        existsSync(fallback) ? ["prebuilt", "prebuilt-cuda12"] : ["prebuilt"],
      );
      expect(prebuilts[0]!.library).toBe(prebuilt);
      if (existsSync(fallback)) expect(prebuilts[1]!.library).toBe(fallback);
      expect(await cudaBackendCandidates({ platform: "darwin" })).toEqual([]);
    },
  );
});
