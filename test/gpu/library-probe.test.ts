// The loader's own answer through the real addon: found with the path it opened, or dlerror's words.
import { describe, expect, it } from "vitest";
import { probeLibraries } from "../../src/gpu/library-probe.js";
import "../support/gpu.js"; // points AITBC_NVML_ADDON at the freshly built addon

describe("probeLibraries", () => {
  it("finds libc through the loader's search, and reports a missing soname with dlerror's text", async () => {
    const [libc, missing] = (await probeLibraries(["libc.so.6", "libaitbc-no-such-lib.so.42"]))!;
    expect(libc).toMatchObject({ name: "libc.so.6", found: true, error: null });
    expect(libc!.path).toMatch(/\/libc\.so\.6$/);
    expect(missing).toMatchObject({ name: "libaitbc-no-such-lib.so.42", found: false, path: null });
    expect(missing!.error).toMatch(/libaitbc-no-such-lib\.so\.42: cannot open shared object file/);
  });

  it("an absolute path is opened as given; an empty name is a TypeError, not a crash", async () => {
    const [abs] = (await probeLibraries(["/nonexistent/dir/libx.so"]))!;
    expect(abs).toMatchObject({ found: false });
    await expect(probeLibraries([""])).rejects.toThrow(TypeError);
  });
});
