// The addon's error paths on the fake NVML: a C++ exception inside a snapshot reaches JavaScript
// as an error (thrown sync, rejected async) and the process goes on; NVML failures keep their
// code; an absurd process count is a bad value, not an allocation.
import { afterEach, describe, expect, it } from "vitest";
import { createGpuInfoSource, type GpuInfoSource, GpuSnapshotError, loadAddon } from "../../src/gpu/index.js";
import { silentLogger } from "../../src/log.js";
import { fakeDevice } from "../fake-nvml/config.js";
import { fake, useFakeConfig } from "../support/gpu.js";

let src: GpuInfoSource | null = null;

afterEach(async () => {
  await src?.close();
  src = null;
});

async function openAddon() {
  src = await createGpuInfoSource({ nvmlLibrary: fake.current, log: silentLogger() });
  expect(src.kind).toBe("nvml");
  const loaded = loadAddon();
  if (!loaded.ok) throw new Error(loaded.reason);
  return loaded.addon;
}

const caught = (f: () => unknown): unknown => {
  try {
    f();
  } catch (e) {
    return e;
  }
  return null;
};

describe("C++ exceptions in the addon", () => {
  it("a device count no driver reports becomes a NativeError without an NVML code, sync and async", async () => {
    // Four billion devices: collecting them would throw in C++ (today a length_error; without the
    // bound, a bad_alloc). Calls 2 and 3 claim it, the 4th reads the real card again.
    useFakeConfig({ devices: [fakeDevice(0)], countClaim: { count: 4_000_000_000, after: 1, times: 2 } });
    const addon = await openAddon();
    expect(addon.snapshotPacked().count).toBe(1);

    const sync = caught(() => addon.snapshotPacked());
    expect(sync).toBeInstanceOf(Error);
    expect((sync as Error).name).toBe("NativeError");
    expect((sync as { code?: unknown }).code).toBeNull();
    expect((sync as Error).message).toContain("nvmlDeviceGetCount reported 4000000000 devices");

    const async = await addon.snapshotPackedAsync().then(
      () => null,
      (e: unknown) => e,
    );
    expect(async).toBeInstanceOf(Error);
    expect((async as Error).name).toBe("NativeError");
    expect((async as { code?: unknown }).code).toBeNull();
    expect((async as Error).message).toContain("4000000000 devices");

    // The session survived both: the next snapshot reads the card.
    expect(addon.snapshotPacked().count).toBe(1);
  });

  it("the GPU source reports it as a snapshot error with no NVML code", async () => {
    useFakeConfig({ devices: [fakeDevice(0)], countClaim: { count: 4_000_000_000, after: 0, times: 1 } });
    const s = (await createGpuInfoSource({
      nvmlLibrary: fake.current,
      log: silentLogger(),
    })) as GpuInfoSource;
    src = s;
    const err = await s.snapshot().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GpuSnapshotError);
    expect((err as GpuSnapshotError).code).toBeNull();
    expect((err as Error).message).toContain("NVML snapshot failed: aitbc_nvml: nvmlDeviceGetCount reported");
    expect((await s.snapshot()).devices).toHaveLength(1);
  });

  it("an NVML failure keeps its code and text, sync and async", async () => {
    useFakeConfig({ devices: [fakeDevice(0)], countError: { code: 999, after: 0, times: 2 } });
    const addon = await openAddon();
    const sync = caught(() => addon.snapshotPacked());
    expect((sync as Error).name).toBe("NvmlError");
    expect((sync as { code?: unknown }).code).toBe(999);
    expect((sync as Error).message).toBe("nvmlDeviceGetCount: Unknown Error");
    const async = await addon.snapshotPackedAsync().then(
      () => null,
      (e: unknown) => e,
    );
    expect((async as Error).name).toBe("NvmlError");
    expect((async as { code?: unknown }).code).toBe(999);
  });

  it("a snapshot before open is an NvmlError (code 1), not a crash", () => {
    const loaded = loadAddon();
    if (!loaded.ok) throw new Error(loaded.reason);
    expect(loaded.addon.isOpen()).toBe(false);
    const err = caught(() => loaded.addon.snapshotPacked());
    expect((err as Error).name).toBe("NvmlError");
    expect((err as { code?: unknown }).code).toBe(1);
  });
});

describe("absurd values from the driver", () => {
  it("a device claiming billions of processes has an unknown process list; the rest reads", async () => {
    useFakeConfig({ devices: [fakeDevice(0, { processesClaim: 4_000_000_000 }), fakeDevice(1)] });
    const s = await createGpuInfoSource({ nvmlLibrary: fake.current, log: silentLogger() });
    src = s;
    const snap = await s.snapshot();
    expect(snap.devices[0]!.error).toBeNull();
    expect(snap.devices[0]!.processes).toBeNull();
    expect(snap.devices[0]!.memoryTotalMiB).toBe(81559);
    expect(snap.devices[1]!.processes).toEqual([]);
  });
});
