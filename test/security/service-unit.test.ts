// The generated systemd unit: it must pass `systemd-analyze verify` and rate OK (exposure <= 2.5)
// in `systemd-analyze security --offline=yes`. Skipped where systemd-analyze is missing
// (Debian: apt-get install -y systemd).
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  hiddenByProtectHome,
  renderUnit,
  STOP_MARGIN_S,
  timeoutStopSec,
  unstableBinReason,
} from "../../src/commands/service.js";
import { runShutdownBudgetMs } from "../../src/miner/loop.js";
import { cliPath } from "../support/cli.js";

// `security --offline=yes` arrived in systemd 252 (Debian 12).
const analyzeVersion = Number(
  /systemd (\d+)/.exec(spawnSync("systemd-analyze", ["--version"], { encoding: "utf8" }).stdout ?? "")?.[1] ??
    0,
);
const hasAnalyze = analyzeVersion >= 252;

function analyze(unitText: string): {
  verify: ReturnType<typeof spawnSync>;
  exposure: number;
  report: string;
} {
  const dir = mkdtempSync(join(tmpdir(), "unit-"));
  const file = join(dir, "aitbc-native-miner-test.service");
  writeFileSync(file, unitText);
  // Run from the unit's folder: verify and security load the file by path, offline.
  const verify = spawnSync("systemd-analyze", ["verify", file], { cwd: dir, encoding: "utf8" });
  const sec = spawnSync("systemd-analyze", ["security", "--offline=yes", "--no-pager", file], {
    cwd: dir,
    encoding: "utf8",
  });
  const report = `${sec.stdout}${sec.stderr}`;
  const m = /Overall exposure level for \S+: (\d+(?:\.\d+)?)/.exec(report);
  return { verify, exposure: m ? Number(m[1]) : Number.NaN, report };
}

// node and the CLI exist on this machine, so verify finds ExecStart's binary.
const base = {
  envFile: "/etc/aitbc-native-miner.env",
  node: process.execPath,
  bin: cliPath,
  gracePeriodS: 30,
};

describe("systemd unit", () => {
  it("stops no sooner than the miner's whole shutdown budget plus a margin", () => {
    expect(timeoutStopSec({ gracePeriodS: 30 })).toBe(
      Math.ceil(runShutdownBudgetMs(30) / 1000) + STOP_MARGIN_S,
    );
    expect(timeoutStopSec({ gracePeriodS: 30 }) * 1000).toBeGreaterThan(runShutdownBudgetMs(30));
    expect(timeoutStopSec({ gracePeriodS: 0 }) * 1000).toBeGreaterThan(runShutdownBudgetMs(0));
    expect(renderUnit({ ...base, gracePeriodS: 45 })).toContain(
      `TimeoutStopSec=${timeoutStopSec({ gracePeriodS: 45 })}`,
    );
  });

  it("runs unprivileged, GPU devices only, state in StateDirectory, key as a credential", () => {
    const unit = renderUnit(base);
    for (const line of [
      "DynamicUser=yes",
      "DevicePolicy=closed",
      "DeviceAllow=/dev/nvidiactl rw",
      "DeviceAllow=char-nvidia-frontend rw",
      "DeviceAllow=char-nvidia-uvm rw",
      "StateDirectory=aitbc-native-miner",
      "Environment=AITBC_STATE_DIR=%S/aitbc-native-miner",
      "LoadCredential=aitbc-api-key:/etc/aitbc-native-miner/api-key",
      "ProtectSystem=strict",
      "ProtectHome=yes",
      "PrivateTmp=yes",
      "NoNewPrivileges=yes",
      "UMask=0077",
      "CapabilityBoundingSet=",
      "SystemCallFilter=@system-service",
      "SystemCallArchitectures=native",
      "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
    ]) {
      expect(unit.split("\n")).toContain(line);
    }
    // node's JIT needs W+X pages; PrivateDevices would hide /dev/nvidia*.
    expect(unit).not.toMatch(/^(MemoryDenyWriteExecute|PrivateDevices|PrivateUsers|User)=/m);
    expect(unit).not.toMatch(/API_KEY=/);
    expect(renderUnit({ ...base, user: "miner" })).toMatch(/^User=miner$/m);
    expect(renderUnit({ ...base, user: "miner" })).not.toMatch(/^DynamicUser=/m);
  });

  it("quotes paths with spaces and escapes % in ExecStart", () => {
    expect(renderUnit({ ...base, node: "/opt/my node/node", bin: "/opt/100%/m.js" })).toMatch(
      /^ExecStart="\/opt\/my node\/node" \/opt\/100%%\/m\.js run --grace-period 30$/m,
    );
  });

  it("refuses an ExecStart in npm's cache, knows what ProtectHome hides", () => {
    expect(
      unstableBinReason("/root/.npm/_npx/1a2b/node_modules/aitbc-native-miner/bin/aitbc-native-miner.js"),
    ).toMatch(/npm's package cache/);
    expect(unstableBinReason("/var/cache/npm/x/m.js", { npm_config_cache: "/var/cache/npm" })).toMatch(
      /cache/,
    );
    expect(hiddenByProtectHome("/home/ann/.nvm/versions/node/v20/bin/node")).toBe(true);
    expect(hiddenByProtectHome("/usr/local/bin/node")).toBe(false);
    expect(
      unstableBinReason("/usr/local/lib/node_modules/aitbc-native-miner/bin/aitbc-native-miner.js", {}),
    ).toBe(undefined);
  });

  it.skipIf(!hasAnalyze)("passes systemd-analyze verify and rates exposure <= 2.5", () => {
    for (const unit of [renderUnit(base), renderUnit({ ...base, user: "nobody" })]) {
      const r = analyze(unit);
      expect(r.verify.status, `${r.verify.stdout}${r.verify.stderr}`).toBe(0);
      expect(r.exposure, r.report).toBeLessThanOrEqual(2.5);
    }
  });
});
