// `service`: print (or install) a hardened systemd unit that runs the miner with restarts. The
// unit runs as an unprivileged dynamic user that sees the NVIDIA device nodes and nothing else of
// note; the API key comes in as a systemd credential, never in the unit or its environment.
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { API_KEY_CREDENTIAL, ConfigError, parseIntFlag } from "../config.js";
import { runShutdownBudgetMs } from "../miner/loop.js";
import { envOf } from "../settings.js";
import { packageRoot } from "../version.js";

export const UNIT_PATH = "/etc/systemd/system/aitbc-native-miner.service";
export const API_KEY_SOURCE = "/etc/aitbc-native-miner/api-key";

/** Room after the miner's own stop budget for node to exit and for a supervisor's margin. */
export const STOP_MARGIN_S = 10;

/** The settings an environment file usually holds, as the unit's comment and `--install` name them. */
const USUAL_ENV = `${envOf("coordinator")}, ${envOf("models")}, ${envOf("minerId")}`;

/**
 * TimeoutStopSec that covers the miner's whole shutdown budget (grace period, abort grace, outbox
 * flush, deregistration, backend release: runShutdownBudgetMs) plus a margin, so systemd never
 * SIGKILLs a clean shutdown.
 */
export function timeoutStopSec(s: { gracePeriodS: number }): number {
  return Math.ceil(runShutdownBudgetMs(s.gracePeriodS) / 1000) + STOP_MARGIN_S;
}

export interface UnitOptions {
  /** A dedicated unprivileged user; absent: DynamicUser=yes. */
  user?: string | undefined;
  envFile: string;
  node: string;
  bin: string;
  gracePeriodS: number;
  flushTimeoutS?: number;
}

/** Quote a path for ExecStart= (systemd specifiers start with %). */
function execArg(path: string): string {
  const escaped = path.replace(/%/g, "%%");
  return /[\s"'\\]/.test(escaped) ? `"${escaped.replace(/["\\]/g, "\\$&")}"` : escaped;
}

export function renderUnit(o: UnitOptions): string {
  const identity = o.user
    ? `User=${o.user}`
    : "# A fresh unprivileged uid for the miner, allocated by systemd; no account to manage.\nDynamicUser=yes";
  return `[Unit]
Description=AITBC native miner (aitbc-native-miner)
After=network-online.target nvidia-persistenced.service
Wants=network-online.target

[Service]
Type=simple
${identity}
# Hosts where /dev/nvidia* are 0660 root:video need the group; with 0666 nodes it is harmless.
SupplementaryGroups=video
# Settings: ${USUAL_ENV}... (chmod 600; no API key here).
EnvironmentFile=${o.envFile}
# The API key is a systemd credential: root-only file on disk, readable by this service only at
# $CREDENTIALS_DIRECTORY/${API_KEY_CREDENTIAL}, which the miner reads when no key is given.
LoadCredential=${API_KEY_CREDENTIAL}:${API_KEY_SOURCE}
# Keys, outbox, journal and receipts live in /var/lib/aitbc-native-miner, owned by the service.
StateDirectory=aitbc-native-miner
StateDirectoryMode=0700
CacheDirectory=aitbc-native-miner
CacheDirectoryMode=0700
Environment=${envOf("stateDir")}=%S/aitbc-native-miner
Environment=CUDA_CACHE_PATH=%C/aitbc-native-miner/cuda
# --grace-period on the command line wins over the environment file, so the stop timeout below
# always matches the miner's grace period.
ExecStart=${execArg(o.node)} ${execArg(o.bin)} run --grace-period ${o.gracePeriodS}
# SIGTERM: finish in-flight jobs (--grace-period), flush the outbox, deregister, exit 0. The stop
# timeout covers the miner's whole stop budget + ${STOP_MARGIN_S} s, so systemd never SIGKILLs a clean shutdown.
KillSignal=SIGTERM
TimeoutStopSec=${timeoutStopSec(o)}
# A wedged GPU makes the miner exit non-zero; systemd starts it again and the outbox resubmits.
Restart=always
RestartSec=10

# Sandbox. The GPU needs its device nodes only: no PrivateDevices= (it would hide /dev/nvidia*);
# DevicePolicy=closed allows /dev/null, /dev/urandom... plus the NVIDIA nodes below.
DevicePolicy=closed
DeviceAllow=/dev/nvidiactl rw
DeviceAllow=/dev/nvidia-uvm rw
DeviceAllow=/dev/nvidia-uvm-tools rw
DeviceAllow=/dev/nvidia-modeset rw
# /dev/nvidia0..N (major of "nvidia-frontend"), UVM and MIG capability nodes, by driver name.
DeviceAllow=char-nvidia-frontend rw
DeviceAllow=char-nvidia-uvm rw
DeviceAllow=char-nvidia-caps rw
DeviceAllow=char-nvidia-nvlink rw
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
UMask=0077
ProtectSystem=strict
# Models and the node binary must live outside /home (e.g. /var/lib, /opt, /usr/local).
ProtectHome=yes
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
# No ProcSubset=pid: NVML and CUDA read /proc/driver/nvidia.
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
PrivateMounts=yes
RemoveIPC=yes
KeyringMode=private
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK
SystemCallArchitectures=native
# CUDA needs mmap/mprotect/ioctl and llama.cpp sets thread affinity and priority: all in
# @system-service. A call outside it fails with EPERM rather than killing the miner.
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
SystemCallErrorNumber=EPERM
# Deliberately not set:
# - MemoryDenyWriteExecute=yes: V8's JIT (node) maps memory writable and executable; the miner
#   would die at start.
# - PrivateUsers=yes: in a user namespace the root-owned /dev/nvidia* nodes and the video group
#   map to nobody/nogroup; the driver's user-space checks of node ownership and MIG capability
#   files then fail, so GPU access breaks on some hosts.
# - IPAddressDeny=: the coordinator may be anywhere; run itself refuses plain http off-host.

[Install]
WantedBy=multi-user.target
`;
}

/**
 * Why `bin` is not a path to put in a unit, or undefined: npx runs the CLI from npm's cache, which
 * npm may clean at any time.
 */
export function unstableBinReason(bin: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const p = resolve(bin);
  const cache = env["npm_config_cache"];
  if (p.includes("/_npx/") || p.includes("/.npm/") || (cache && p.startsWith(`${resolve(cache)}/`))) {
    return `${p} is inside npm's package cache (npx), which npm may clean`;
  }
  return undefined;
}

/** A path the unit cannot reach: ProtectHome=yes hides /home, /root and /run/user. */
export function hiddenByProtectHome(path: string): boolean {
  return /^\/(home|root|run\/user)(\/|$)/.test(resolve(path));
}

interface ServiceOptions {
  user?: string;
  envFile: string;
  gracePeriod: string;
  bin?: string;
  node?: string;
  install?: boolean;
}

export function register(program: Command): void {
  program
    .command("service")
    .description("print a hardened systemd unit for this miner (or install it with --install, as root)")
    .option("--user <USER>", "run as this unprivileged user (default: a systemd DynamicUser)")
    .option("--env-file <FILE>", "EnvironmentFile holding AITBC_* settings", "/etc/aitbc-native-miner.env")
    .option("--grace-period <SECONDS>", "matches the miner's --grace-period", "30")
    .option("--bin <PATH>", "the aitbc-native-miner.js to run (default: this installation)")
    .option("--node <PATH>", "the node binary to run it with (default: this node)")
    .option("--install", `write ${UNIT_PATH}`)
    .action((opts: ServiceOptions) => {
      const gracePeriodS = parseIntFlag("--grace-period", opts.gracePeriod, 0, 3600);
      if (opts.user === "root") throw new ConfigError("--user: the miner must not run as root");
      const bin = resolve(opts.bin ?? join(packageRoot, "bin", "aitbc-native-miner.js"));
      const node = resolve(opts.node ?? process.execPath);
      for (const [flag, path] of [
        ["--bin", bin],
        ["--node", node],
      ] as const) {
        const why = unstableBinReason(path);
        if (why) {
          throw new ConfigError(
            `${flag}: ${why}. Install a stable copy first: \`sudo npm install -g aitbc-native-miner\` ` +
              `(with a system-wide node), then \`sudo aitbc-native-miner service --install\`; or pass ${flag} PATH`,
          );
        }
      }
      for (const path of [bin, node]) {
        if (hiddenByProtectHome(path)) {
          process.stderr.write(
            `warning: ${path} is under a home directory, which the unit hides (ProtectHome=yes); ` +
              "install node and the miner system-wide (e.g. /usr/local) or pass --bin / --node\n",
          );
        }
      }
      const unit = renderUnit({ user: opts.user, envFile: opts.envFile, node, bin, gracePeriodS });
      if (!opts.install) {
        process.stdout.write(unit);
        return;
      }
      try {
        writeFileSync(UNIT_PATH, unit, { mode: 0o644 });
      } catch (err) {
        process.stderr.write(
          `cannot write ${UNIT_PATH}: ${(err as NodeJS.ErrnoException).code}; run as root (sudo)\n`,
        );
        process.exitCode = 1;
        return;
      }
      process.stdout.write(
        `wrote ${UNIT_PATH}\nnext:\n` +
          `  sudo install -d -m 700 ${API_KEY_SOURCE.replace(/\/[^/]+$/, "")}\n` +
          `  sudo sh -c 'umask 077; cat > ${API_KEY_SOURCE}'   # paste the API key, then Ctrl-D\n` +
          `  sudo install -m 600 /dev/null ${opts.envFile}   # then add ${USUAL_ENV}...\n` +
          "  sudo systemctl daemon-reload && sudo systemctl enable --now aitbc-native-miner\n" +
          "  journalctl -u aitbc-native-miner -f\n",
      );
    });
}
