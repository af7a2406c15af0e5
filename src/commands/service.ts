// `service`: print (or install) a systemd unit that runs the miner with restarts. Secrets go in
// an EnvironmentFile with mode 0600, never in the unit itself.
import { writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { join } from "node:path";
import type { Command } from "commander";
import { packageRoot } from "../version.js";

export interface UnitOptions {
  user: string;
  envFile: string;
  node: string;
  bin: string;
  gracePeriodS: number;
}

export function renderUnit(o: UnitOptions): string {
  return `[Unit]
Description=AITBC native miner (aitbc-native-miner)
After=network-online.target nvidia-persistenced.service
Wants=network-online.target

[Service]
Type=simple
User=${o.user}
# AITBC_COORDINATOR, AITBC_API_KEY, AITBC_MINER_ID, AITBC_MODELS... (chmod 600 this file)
EnvironmentFile=${o.envFile}
ExecStart=${o.node} ${o.bin} run
# SIGTERM lets in-flight jobs finish (--grace-period) and flushes the outbox before exit.
KillSignal=SIGTERM
TimeoutStopSec=${o.gracePeriodS + 30}
# A wedged GPU makes the miner exit non-zero; systemd starts it again and the outbox resubmits.
Restart=always
RestartSec=10
NoNewPrivileges=true
ProtectSystem=full
PrivateTmp=true

[Install]
WantedBy=multi-user.target
`;
}

export function register(program: Command): void {
  program
    .command("service")
    .description("print a systemd unit for this miner (or install it with --install, as root)")
    .option("--user <USER>", "user the miner runs as", userInfo().username)
    .option("--env-file <FILE>", "EnvironmentFile holding AITBC_* settings", "/etc/aitbc-native-miner.env")
    .option("--grace-period <SECONDS>", "matches the miner's --grace-period", "30")
    .option("--install", "write /etc/systemd/system/aitbc-native-miner.service")
    .action((opts: { user: string; envFile: string; gracePeriod: string; install?: boolean }) => {
      const grace = Number(opts.gracePeriod);
      const unit = renderUnit({
        user: opts.user,
        envFile: opts.envFile,
        node: process.execPath,
        bin: join(packageRoot, "bin", "aitbc-native-miner.js"),
        gracePeriodS: Number.isFinite(grace) && grace >= 0 ? grace : 30,
      });
      if (!opts.install) {
        process.stdout.write(unit);
        return;
      }
      const path = "/etc/systemd/system/aitbc-native-miner.service";
      try {
        writeFileSync(path, unit, { mode: 0o644 });
      } catch (err) {
        process.stderr.write(
          `cannot write ${path}: ${(err as NodeJS.ErrnoException).code}; run as root (sudo)\n`,
        );
        process.exitCode = 1;
        return;
      }
      process.stdout.write(
        `wrote ${path}\nnext:\n  sudo install -m 600 /dev/null ${opts.envFile}   # then add AITBC_* settings to it\n` +
          "  sudo systemctl daemon-reload && sudo systemctl enable --now aitbc-native-miner\n" +
          "  journalctl -u aitbc-native-miner -f\n",
      );
    });
}
