// The real addon (N-API, dlopen) over the fake libnvidia-ml, in this process.
import { afterEach, describe, expect, it } from "vitest";
import {
  admit,
  capabilitiesFromSnapshot,
  createGpuInfoSource,
  defaultNvmlLibrary,
  type GpuInfoSource,
  GpuSnapshotError,
  heartbeatMetrics,
  loadAddon,
  pickDevice,
  readExtra,
} from "../../src/gpu/index.js";
import { NVML_FLAGS, NVML_NUMBERS } from "../../src/gpu/nvml-fields.js";
import { PackedLayoutError, packedDecoder } from "../../src/gpu/packed.js";
import { silentLogger } from "../../src/log.js";
import { expectedSnapshot, type FakeNvmlConfig, fakeDevice } from "../fake-nvml/config.js";
import { fake, useFakeConfig } from "../support/gpu.js";

const log = silentLogger();
let src: GpuInfoSource | null = null;

afterEach(async () => {
  await src?.close();
  src = null;
});

async function open(library = fake.current): Promise<GpuInfoSource> {
  src = await createGpuInfoSource({ nvmlLibrary: library, log, nvidiaSmi: "/nonexistent/nvidia-smi" });
  return src;
}

describe("NVML addon over the fake library", () => {
  it.each([0, 1, 2, 8])("reports %i GPU(s) with every field mapped", async (count) => {
    useFakeConfig({ devices: Array.from({ length: count }, (_, i) => fakeDevice(i)), cuda: 12040 });
    const s = await (await open()).snapshot();
    expect(s.source).toBe("nvml");
    expect(s.driverVersion).toBe("550.54.14");
    expect(s.nvmlVersion).toBe("12.550.54.14");
    expect(s.cudaDriverVersion).toBe("12.4");
    expect(s.devices).toHaveLength(count);
    s.devices.forEach((d, i) => {
      expect(d.index).toBe(i);
      expect(d.uuid).toBe(fakeDevice(i).uuid);
      expect(d.name).toBe("NVIDIA H100 80GB HBM3");
      expect(d.pciBusId).toBe(fakeDevice(i).pci);
      expect(d.memoryTotalMiB).toBe(81559);
      expect(d.memoryUsedMiB).toBe(1024 + i);
      expect(d.memoryFreeMiB).toBe(81559 - 1024 - i - 512);
      expect(d.utilizationGpuPct).toBe(10 + i);
      expect(d.temperatureC).toBe(40 + i);
      expect(d.powerDrawW).toBe(120 + i);
      expect(d.powerLimitW).toBe(700);
      expect(d.computeCapability).toBe("9.0");
      expect(d.processes).toEqual([]);
      expect(d.error).toBeNull();
      const x = readExtra(d);
      expect(x.memoryReservedMiB).toBe(512);
      expect(x.totalEnergyMj).toBe(123_456_789 + i);
      expect(x.smClockMHz).toBe(1980);
      expect(x.clockEventReasons).toEqual(["gpu_idle"]);
      expect(x.pstate).toBe(0);
      expect(x.eccModeCurrent).toBe(true);
      expect(x.pcieLinkGen).toBe(5);
      // PCIe throughput is a slow call: not read unless asked for.
      expect(x.pcieTxKBs).toBeNull();
    });
    const caps = capabilitiesFromSnapshot(s);
    expect(caps.platform).toBe(count > 0 ? "CUDA" : "CPU");
    expect(caps.gpus).toHaveLength(count);
    expect(heartbeatMetrics(s)).toHaveLength(count);
  });

  it("reads PCIe throughput only when asked", async () => {
    useFakeConfig({ devices: [fakeDevice(0)] });
    src = await createGpuInfoSource({ nvmlLibrary: fake.current, log, pcieThroughput: true });
    const x = readExtra((await src.snapshot()).devices[0]!);
    expect([x.pcieTxKBs, x.pcieRxKBs]).toEqual([1000, 2000]);
  });

  it("turns NOT_SUPPORTED fields into null, per device", async () => {
    useFakeConfig({
      devices: [
        fakeDevice(0),
        fakeDevice(1, {
          unsupported: ["fan", "power", "memory", "energy", "clock_reasons", "processes", "cc"],
        }),
      ],
    });
    const s = await (await open()).snapshot();
    const [a, b] = s.devices;
    expect(readExtra(a!).fanPct).toBe(30);
    expect(b!.powerDrawW).toBeNull();
    expect(b!.memoryTotalMiB).toBeNull();
    expect(b!.memoryFreeMiB).toBeNull();
    expect(b!.processes).toBeNull();
    expect(b!.computeCapability).toBeNull();
    const x = readExtra(b!);
    expect(x.fanPct).toBeNull();
    expect(x.totalEnergyMj).toBeNull();
    expect(x.clockEventReasons).toBeNull();
    // Fields it does support are still there.
    expect(b!.temperatureC).toBe(41);
    expect(b!.powerLimitW).toBe(700);
  });

  it("works with an old driver that has no versioned symbols", async () => {
    useFakeConfig({
      devices: [
        fakeDevice(0, {
          processes: [
            { pid: 4242, usedMiB: 300 },
            { pid: 7, usedMiB: null },
          ],
        }),
      ],
    });
    const s = await (await open(fake.old)).snapshot();
    expect(s.source).toBe("nvml");
    expect(s.reason).toContain("missing symbols: nvmlDeviceGetTotalEnergyConsumption");
    const d = s.devices[0]!;
    // nvmlDeviceGetMemoryInfo (v1): no reserved figure, used includes it.
    expect(d.memoryTotalMiB).toBe(81559);
    expect(d.memoryUsedMiB).toBe(1024 + 512);
    expect(readExtra(d).memoryReservedMiB).toBeNull();
    // Only the energy counter is missing; everything else still reads.
    expect(readExtra(d).totalEnergyMj).toBeNull();
    expect(readExtra(d).clockEventReasons).toEqual(["gpu_idle"]);
    // v1 PCI info carries only the 16-byte legacy bus id.
    expect(d.pciBusId).toBe("0000:01:00.0");
    // v1 process records are 16 bytes: pids and sizes must still line up.
    expect(d.processes).toEqual([
      { pid: 4242, usedMemoryMiB: 300 },
      { pid: 7, usedMemoryMiB: null },
    ]);
  });

  it("follows a process list that grows between the sizing call and the fill call", async () => {
    const procs = [1, 2, 3].map((pid) => ({ pid, usedMiB: 100 * pid }));
    useFakeConfig({ devices: [fakeDevice(0, { processes: procs, processesGrow: 6 })] });
    const d = (await (await open()).snapshot()).devices[0]!;
    expect(d.processes).toHaveLength(9);
    expect(d.processes!.slice(0, 3)).toEqual(procs.map((p) => ({ pid: p.pid, usedMemoryMiB: p.usedMiB })));
    expect(d.processes![8]).toEqual({ pid: 50005, usedMemoryMiB: 6 });
  });

  it("flags a GPU that is lost mid-run and keeps reading the others", async () => {
    useFakeConfig({ devices: [fakeDevice(0), fakeDevice(1, { lostAfter: 40 })] });
    const s = await open();
    const first = await s.snapshot();
    expect(first.devices[1]!.error).toBeNull();
    let last = first;
    for (let i = 0; i < 5; i++) last = await s.snapshot();
    const lost = last.devices[1]!;
    expect(lost.error?.code).toBe(15);
    expect(lost.error?.message).toContain("GPU is lost");
    expect(lost.uuid).toBe(fakeDevice(1).uuid);
    expect(lost.memoryFreeMiB).toBeNull();
    expect(last.devices[0]!.error).toBeNull();
    expect(last.devices[0]!.memoryTotalMiB).toBe(81559);
    // A lost GPU is neither advertised nor picked.
    expect(capabilitiesFromSnapshot(last).gpus.map((g) => g.uuid)).toEqual([fakeDevice(0).uuid]);
    expect(pickDevice(last)?.index).toBe(0);
    expect(heartbeatMetrics(last)[1]!.error).toContain("GPU is lost");
  });

  it("rejects a snapshot that fails as a whole with the NVML code, and recovers after", async () => {
    useFakeConfig({ devices: [fakeDevice(0)], countError: { code: 999, after: 1, times: 1 } });
    const s = await open();
    expect((await s.snapshot()).devices).toHaveLength(1);
    const err = await s.snapshot().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GpuSnapshotError);
    expect((err as GpuSnapshotError).code).toBe(999);
    expect((err as GpuSnapshotError).message).toContain("nvmlDeviceGetCount: Unknown Error");
    expect((await s.snapshot()).devices).toHaveLength(1);
  });

  it("has no GPU when the library is missing, with the dlerror reason", async () => {
    const s = await open("/nonexistent/libnvidia-ml.so.1");
    expect(s.kind).toBe("none");
    expect(s.reason).toContain("/nonexistent/libnvidia-ml.so.1: cannot open shared object file");
    const snap = await s.snapshot();
    expect(snap.devices).toEqual([]);
    expect(capabilitiesFromSnapshot(snap)).toEqual({ gpus: [], cuda: null, platform: "CPU" });
    expect(admit(snap, 4 * 1024 ** 3)).toMatchObject({ ok: true, deviceIndex: -1 });
  });

  it("reports nvmlInit failures as unavailable with the NVML error text", async () => {
    useFakeConfig({ initError: 9, devices: [fakeDevice(0)] });
    const s = await open();
    expect(s.kind).toBe("none");
    expect(s.reason).toContain("nvmlInit failed: Driver Not Loaded (NVML code 9)");
  });

  it("resolves the default library in TypeScript; the addon requires a path", async () => {
    expect(defaultNvmlLibrary({})).toBe("libnvidia-ml.so.1");
    expect(defaultNvmlLibrary({ AITBC_NVML_LIBRARY: "" })).toBe("libnvidia-ml.so.1");
    expect(defaultNvmlLibrary({ AITBC_NVML_LIBRARY: "/opt/nvml.so" })).toBe("/opt/nvml.so");
    const loaded = loadAddon();
    if (!loaded.ok) throw new Error(loaded.reason);
    const open = loaded.addon.open as (library?: unknown) => Promise<unknown>;
    expect(() => open()).toThrow(TypeError);
    expect(() => open("")).toThrow(/non-empty path/);
  });

  it("takes the library path from AITBC_NVML_LIBRARY when no option is given", async () => {
    useFakeConfig({ devices: [fakeDevice(0), fakeDevice(1)] });
    process.env["AITBC_NVML_LIBRARY"] = fake.current;
    try {
      src = await createGpuInfoSource({ log });
      expect(src.kind).toBe("nvml");
      expect((await src.snapshot()).devices).toHaveLength(2);
    } finally {
      delete process.env["AITBC_NVML_LIBRARY"];
    }
  });
});

describe("packed snapshot", () => {
  it("decodes to exactly what the fake NVML serves, sync and async", async () => {
    const cfg: FakeNvmlConfig = {
      devices: [
        fakeDevice(0, {
          processes: [
            { pid: 9, usedMiB: 77 },
            { pid: 8, usedMiB: null },
          ],
          clockReasons: 0x44,
        }),
        fakeDevice(1, { unsupported: ["fan", "cc", "processes", "ecc", "power"], eccCurrent: false }),
        fakeDevice(2, { lostAfter: 0 }),
        // After a lost device and one without a process list: its pairs must still line up.
        fakeDevice(3, { processes: [{ pid: 31, usedMiB: 3 }], pstate: 32 }),
      ],
      cuda: 12020,
    };
    useFakeConfig(cfg);
    await open();
    const loaded = loadAddon();
    if (!loaded.ok) throw new Error(loaded.reason);
    const { addon, unpack } = loaded;
    expect(unpack(addon.snapshotPacked({ pcieThroughput: true }))).toEqual(
      expectedSnapshot(cfg, { pcieThroughput: true }),
    );
    expect(unpack(await addon.snapshotPackedAsync())).toEqual(expectedSnapshot(cfg));
  });

  it("names its layout, and a value the decoder needs but the addon lacks fails at load", () => {
    const loaded = loadAddon();
    if (!loaded.ok) throw new Error(loaded.reason);
    const { packedFields, packedStrings } = loaded.addon;
    expect(new Set(packedFields).size).toBe(packedFields.length);
    expect(packedStrings).toEqual(["name", "uuid", "pciBusId", "errorMessage"]);
    // One name per fact: the C++ list (native/snapshot.h) is the TypeScript one, both ways.
    const assembled = ["computeCapabilityMajor", "computeCapabilityMinor", "errorCode", "processCount"];
    expect(new Set(packedFields.filter((f) => !assembled.includes(f)))).toEqual(
      new Set([...NVML_NUMBERS, ...NVML_FLAGS]),
    );
    // The decoder reads by name, so another order decodes the same.
    expect(() => packedDecoder({ packedFields: [...packedFields].reverse(), packedStrings })).not.toThrow();
    const without = packedFields.filter((f) => f !== "pcieRxKBs");
    expect(() => packedDecoder({ packedFields: without, packedStrings })).toThrow(PackedLayoutError);
    expect(() => packedDecoder({ packedFields: without, packedStrings })).toThrow(/lack "pcieRxKBs"/);
    expect(() => packedDecoder({ packedFields, packedStrings: ["name", "uuid"] })).toThrow(/lack "pciBusId"/);
  });
});

describe("admission on measured VRAM", () => {
  it("refuses a model bigger than free VRAM and accepts one that fits, on the GPU with most free", async () => {
    useFakeConfig({
      devices: [
        fakeDevice(0, { memTotalMiB: 8192, memUsedMiB: 6000, memReservedMiB: 192 }), // 2000 free
        fakeDevice(1, { memTotalMiB: 24576, memUsedMiB: 4096, memReservedMiB: 480 }), // 20000 free
      ],
    });
    const s = await (await open()).snapshot();
    const GiB = 1024 ** 3;
    const big = admit(s, 20 * GiB);
    expect(big.ok).toBe(false);
    if (!big.ok) {
      expect(big.reason).toContain(`needs ${Math.ceil(20 * 1024 * 1.2 + 512)} MiB`);
      expect(big.reason).toContain("GPU 1");
      expect(big.reason).toContain("20000 MiB free");
    }
    const fits = admit(s, 8 * GiB);
    expect(fits).toEqual({
      ok: true,
      deviceIndex: 1,
      freeMiB: 20000,
      needMiB: Math.ceil(8 * 1024 * 1.2 + 512),
    });
    expect(admit(s, 1 * GiB, { deviceIndex: 0 })).toMatchObject({ ok: true, deviceIndex: 0 });
    expect(admit(s, 2 * GiB, { deviceIndex: 0 }).ok).toBe(false);
  });
});
