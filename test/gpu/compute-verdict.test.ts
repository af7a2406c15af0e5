// Truth in advertising as a table: what NVML sees, what the runtime computes on, what is allowed →
// what is advertised or why the miner refuses. And the refusal's words, from synthetic host facts.
import { describe, expect, it } from "vitest";
import { type CpuRuntimeFacts, explainCpuRuntimeFacts } from "../../src/backends/llama/gpu-diagnosis.js";
import type { ComputeInfo } from "../../src/backends/types.js";
import { judgeCompute, type OwnedGpu } from "../../src/gpu/compute-verdict.js";

const h200: OwnedGpu = { name: "NVIDIA H200", memoryTotalMiB: 143_771, uuid: "GPU-a" };
const a100: OwnedGpu = { name: "NVIDIA A100-SXM4-40GB", memoryTotalMiB: 40_960, uuid: "GPU-b" };
const MiB = 2 ** 20;

function compute(
  kind: ComputeInfo["kind"],
  devices: string[] = [],
  vramMiB: number | null = null,
): ComputeInfo {
  return {
    kind,
    devices,
    vramTotalBytes: vramMiB === null ? null : vramMiB * MiB,
    build: "prebuilt",
    cpuByChoice: false,
    gpuError: null,
  };
}

describe("judgeCompute", () => {
  it("a CPU host with a CPU runtime mines as CPU", () => {
    expect(judgeCompute([], compute("cpu"), { allowCpu: false })).toMatchObject({
      ok: true,
      platform: "CPU",
      advertiseGpus: false,
      note: null,
    });
  });

  it("NVML sees a GPU, the runtime is CPU: refused by default, naming the card", () => {
    const v = judgeCompute([h200], compute("cpu"), { allowCpu: false });
    expect(v).toMatchObject({ ok: false, code: "gpu_runtime_missing" });
    expect(v.ok ? "" : v.message).toBe("NVML sees 1 GPU (NVIDIA H200) but node-llama-cpp started on the CPU");
  });

  it("…mined on the CPU with the opt-in, advertising no GPU, with a note", () => {
    const v = judgeCompute([h200, a100], compute("cpu"), { allowCpu: true });
    expect(v).toMatchObject({ ok: true, platform: "CPU", advertiseGpus: false });
    expect(v.ok && v.note).toMatch(/--allow-cpu-inference.*2 GPUs \(NVIDIA H200, NVIDIA A100-SXM4-40GB\)/);
  });

  it("--gpu cpu is a choice: CPU, no GPU advertised, no refusal", () => {
    const v = judgeCompute([h200], { ...compute("cpu"), cpuByChoice: true }, { allowCpu: false });
    expect(v).toMatchObject({ ok: true, platform: "CPU", advertiseGpus: false });
  });

  it("CUDA on the owned card: advertised as CUDA, no note", () => {
    const v = judgeCompute([h200], compute("cuda", ["NVIDIA H200"], 143_771), { allowCpu: false });
    expect(v).toMatchObject({ ok: true, platform: "CUDA", advertiseGpus: true, note: null });
  });

  it("Vulkan mines, says so once, and advertises the platform as Vulkan", () => {
    const v = judgeCompute([h200], compute("vulkan", ["llvmpipe (LLVM 15)", "NVIDIA H200"]), {
      allowCpu: false,
    });
    expect(v).toMatchObject({ ok: true, platform: "Vulkan", advertiseGpus: true });
    expect(v.ok && v.note).toMatch(/Vulkan/);
  });

  it("a worker whose runtime computes on another card than the one NVML says it owns is refused", () => {
    const byName = judgeCompute([h200], compute("cuda", ["NVIDIA A100-SXM4-40GB"]), { allowCpu: false });
    expect(byName).toMatchObject({ ok: false, code: "gpu_device_mismatch" });
    expect(byName.ok ? "" : byName.message).toMatch(/owns 1 GPU \(NVIDIA H200\).*computes on NVIDIA A100/);
    // Two cards of one model: the count and the memory tell them apart from one.
    const byCount = judgeCompute([h200], compute("cuda", ["NVIDIA H200", "NVIDIA H200"]), {
      allowCpu: false,
    });
    expect(byCount).toMatchObject({ ok: false, code: "gpu_device_mismatch" });
    const byMemory = judgeCompute(
      [{ ...a100, name: "NVIDIA A100" }],
      compute("cuda", ["NVIDIA A100"], 81_920),
      { allowCpu: false },
    );
    expect(byMemory).toMatchObject({ ok: false, code: "gpu_device_mismatch" });
    expect(byMemory.ok ? "" : byMemory.message).toMatch(/40960 MiB.*81920 MiB/);
  });

  it("names match whatever the spacing and case; memory within the driver's reserve", () => {
    const v = judgeCompute([h200], compute("cuda", ["nvidia  h200 "], 143_771 - 500), { allowCpu: false });
    expect(v.ok).toBe(true);
  });

  it("a backend that cannot tell (Ollama) keeps NVML's word", () => {
    expect(judgeCompute([h200], null, { allowCpu: false })).toMatchObject({
      ok: true,
      platform: "CUDA",
      advertiseGpus: true,
    });
  });
});

const probe = (name: string, found: boolean) => ({
  name,
  found,
  path: found ? `/usr/lib/${name}` : null,
  error: found ? null : `${name}: cannot open shared object file: No such file or directory`,
});
const noKernel = {
  runs: false,
  via: null,
  certain: true,
  reason:
    "PTX 9.1 needs a CUDA 13.1 driver, this one is 13.0: no kernel can run on this NVIDIA H200 (cc 9.0)",
};
const sass = { runs: true, via: "sass" as const, certain: true, reason: "machine code for sm_89" };

describe("why the runtime is on the CPU", () => {
  it("names each missing soname with its CUDA major, and the packages to install", () => {
    const facts: CpuRuntimeFacts = {
      builds: [
        {
          label: "prebuilt",
          cudaMajor: 13,
          libraries: [
            probe("libcudart.so.13", false),
            probe("libcublas.so.13", false),
            probe("libcuda.so.1", true),
          ],
          kernels: [sass],
        },
      ],
      probeUnavailable: false,
      gpuError: null,
    };
    const text = explainCpuRuntimeFacts(facts);
    expect(text).toMatch(
      /prebuilt \(CUDA 13\) needs libcudart\.so\.13, libcublas\.so\.13, not found by the loader/,
    );
    expect(text).toContain("apt-get install cuda-cudart-13-0 libcublas-13-0");
    expect(text).toContain("LD_LIBRARY_PATH");
    expect(text).toContain("deploy/Dockerfile");
    expect(text).not.toContain("libcuda.so.1 visible");
    expect(text).not.toContain("gpu build");
    expect(text).toMatch(/--allow-cpu-inference$/);
  });

  it("a driver-only container lacks libcuda.so.1 too: says how to mount it", () => {
    const facts: CpuRuntimeFacts = {
      builds: [
        { label: "prebuilt", cudaMajor: 13, libraries: [probe("libcuda.so.1", false)], kernels: [sass] },
      ],
      probeUnavailable: false,
      gpuError: null,
    };
    expect(explainCpuRuntimeFacts(facts)).toContain("NVIDIA_DRIVER_CAPABILITIES=compute,utility");
  });

  it("no build with kernels for this GPU (H200 on a 580 driver): gpu build first, then its runtime", () => {
    const facts: CpuRuntimeFacts = {
      builds: [
        {
          label: "prebuilt",
          cudaMajor: 13,
          libraries: [probe("libcublas.so.13", false)],
          kernels: [noKernel],
        },
      ],
      probeUnavailable: false,
      gpuError: "CUDA error: no kernel image is available",
    };
    const text = explainCpuRuntimeFacts(facts);
    expect(text).toContain(noKernel.reason);
    expect(text).toMatch(/aitbc-native-miner gpu build.*and install the CUDA 13 runtime/);
    expect(text).toContain("node-llama-cpp said: CUDA error");
  });

  it("no CUDA build installed at all", () => {
    expect(explainCpuRuntimeFacts({ builds: [], probeUnavailable: false, gpuError: null })).toMatch(
      /no CUDA build of node-llama-cpp is installed.*gpu build/,
    );
  });
});
