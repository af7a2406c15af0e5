#!/usr/bin/env node
// Builds the NVML addon with cmake-js and copies it to prebuilds/<platform>-<arch>/aitbc_nvml.node.
// Never fails the install: without a compiler, cmake or cmake-js it prints a warning and exits 0
// (the runtime then uses a shipped prebuild, or falls back to nvidia-smi). `--strict` makes
// failures exit 1 (CI). Works offline: headers come from node-api-headers/node-addon-api, never
// from a download.
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, renameSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(join(root, "package.json"));
const strict = process.argv.includes("--strict");
const quiet = process.argv.includes("--quiet");

function warn(msg) {
  process.stderr.write(`build-native: warning: ${msg}\n`);
  process.stderr.write(
    "build-native: the miner still runs: it uses a prebuilt addon when one fits, else nvidia-smi, else no GPU info\n",
  );
  process.exit(strict ? 1 : 0);
}

function have(cmd, args = ["--version"]) {
  return spawnSync(cmd, args, { stdio: "ignore" }).status === 0;
}

if (process.env.AITBC_SKIP_NATIVE_BUILD === "1") {
  process.stderr.write("build-native: skipped (AITBC_SKIP_NATIVE_BUILD=1)\n");
  process.exit(0);
}
if (process.platform !== "linux") warn(`the NVML addon targets Linux; this is ${process.platform}`);
const cxx = process.env.CXX || "c++";
if (!have(cxx)) warn(`no C++ compiler (${cxx}) found`);
if (!have("cmake")) warn("cmake not found");

let cmakeJs;
let includeDirs;
try {
  cmakeJs = require("cmake-js");
  const apiHeaders = require("node-api-headers");
  includeDirs = [apiHeaders.include_dir, dirname(require.resolve("node-addon-api/package.json"))];
} catch (err) {
  warn(`cmake-js/node-addon-api/node-api-headers not installed (${err.message})`);
}

const out = join(root, "build");
try {
  const bs = new cmakeJs.BuildSystem({
    directory: root,
    out,
    config: "Release",
    silent: quiet,
    cMakeOptions: { NODE_API_INCLUDE_DIRS: includeDirs.join(";") },
  });
  // A Node-API-only addon needs no node/v8 headers; cmake-js decides that from package.json's
  // binary.napi_versions, which we do not set, so say it here (otherwise it would download headers).
  bs.options.isNodeApi = true;
  await bs.build();
} catch (err) {
  warn(`cmake-js build failed: ${err instanceof Error ? err.message : String(err)}`);
}

const built = join(out, "Release", "aitbc_nvml.node");
if (!existsSync(built)) warn(`build finished but ${built} is missing`);

// Trust the fresh binary only after a child process has loaded it (a bad binary could crash us).
try {
  execFileSync(
    process.execPath,
    [
      "-e",
      `const m = require(${JSON.stringify(built)}); if (typeof m.open !== "function" || m.abiVersion !== 2) process.exit(3);`,
    ],
    { stdio: "pipe", timeout: 30_000 },
  );
} catch (err) {
  warn(`the freshly built addon does not load: ${err instanceof Error ? err.message : String(err)}`);
}

const destDir = join(root, "prebuilds", `${process.platform}-${process.arch}`);
mkdirSync(destDir, { recursive: true });
const dest = join(destDir, "aitbc_nvml.node");
// Copy then rename: a process that has the old file mapped keeps its copy intact.
copyFileSync(built, `${dest}.tmp`);
renameSync(`${dest}.tmp`, dest);
if (!quiet) process.stderr.write(`build-native: ${dest}\n`);
