// Global-setup step: build the fake libnvidia-ml (current and old-driver variants) into
// test/.fixtures/fake-nvml/ with cc, and the addon itself when build/ lacks it. Cached: a
// variant is rebuilt only when a source of it is newer.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";

export const fakeNvmlPaths = (root: string) => {
  const dir = join(root, "test", ".fixtures", "fake-nvml");
  return {
    dir,
    current: join(dir, "current", "libnvidia-ml.so.1"),
    old: join(dir, "old", "libnvidia-ml.so.1"),
  };
};

function stale(out: string, src: string): boolean {
  return !existsSync(out) || statSync(out).mtimeMs < statSync(src).mtimeMs;
}

function compile(src: string[], out: string, defines: string[]): void {
  mkdirSync(join(out, ".."), { recursive: true });
  execFileSync(
    process.env["CC"] || "cc",
    [
      "-std=c11",
      "-O1",
      "-Wall",
      "-Wextra",
      "-shared",
      "-fPIC",
      "-fvisibility=hidden",
      ...defines,
      "-o",
      out,
      ...src,
    ],
    { stdio: "pipe" },
  );
}

export default async function setup(root: string): Promise<void> {
  const dir = join(root, "test", "fake-nvml");
  const src = ["fake_nvml.c", "fake_health.c"].map((f) => join(dir, f));
  const inputs = [...src, join(dir, "fake_nvml.h")];
  const p = fakeNvmlPaths(root);
  if (inputs.some((f) => stale(p.current, f))) compile(src, p.current, []);
  if (inputs.some((f) => stale(p.old, f))) compile(src, p.old, ["-DFAKE_OLD_DRIVER"]);
  // The suites run the real addon: build it when missing or older than its sources.
  const addon = join(root, "build", "Release", "aitbc_nvml.node");
  const sources = [
    "addon.cc",
    "health_events.cc",
    "nvml_loader.cc",
    "snapshot.cc",
    "nvml_api.h",
    "health_events.h",
    "nvml_loader.h",
    "snapshot.h",
    "js_errors.h",
  ].map((f) => join(root, "native", f));
  if (!existsSync(addon) || sources.some((s) => stale(addon, s))) {
    execFileSync(process.execPath, [join(root, "scripts", "build-native.mjs"), "--strict", "--quiet"], {
      cwd: root,
      stdio: "pipe",
    });
  }
}
