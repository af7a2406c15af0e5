// The prebuilt addon ships inside the package: it must load on the oldest glibc/libstdc++ a Node 20
// host may have (glibc 2.28, libstdc++ of GCC 8), not only on the machine that built it.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..", "..");
const prebuilt = join(root, "prebuilds", `${process.platform}-${process.arch}`, "aitbc_nvml.node");
const haveObjdump = spawnSync("objdump", ["--version"]).status === 0;

function newest(versions: string[], prefix: string): number[] {
  return versions
    .filter((v) => v.startsWith(`${prefix}_`))
    .map((v) =>
      v
        .slice(prefix.length + 1)
        .split(".")
        .map(Number),
    )
    .reduce((a, b) => (compare(a, b) >= 0 ? a : b), [0]);
}

function compare(a: number[], b: number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

describe.skipIf(!haveObjdump || process.platform !== "linux" || !existsSync(prebuilt))(
  "prebuilt addon",
  () => {
    it("needs no glibc newer than 2.28 and no libstdc++ newer than GCC 8's", () => {
      const text = execFileSync("objdump", ["-T", prebuilt], { encoding: "utf8" });
      const versions = [...new Set(text.match(/\b(GLIBC|GLIBCXX|CXXABI)_[0-9.]+/g) ?? [])];
      expect(compare(newest(versions, "GLIBC"), [2, 28])).toBeLessThanOrEqual(0);
      expect(compare(newest(versions, "GLIBCXX"), [3, 4, 25])).toBeLessThanOrEqual(0);
      expect(compare(newest(versions, "CXXABI"), [1, 3, 11])).toBeLessThanOrEqual(0);
    });
  },
);
