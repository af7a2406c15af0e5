// Command-line entry. Each command is a module loaded only when it runs: `--version` and the
// top-level `--help` load commander alone, `verify` never loads node-llama-cpp, undici or pino.
// Errors in usage or config exit with code 2.
import { Command, CommanderError } from "commander";
import { version } from "./version.js";

interface CommandModule {
  register(program: Command): void;
}

interface CommandEntry {
  name: string;
  /** For the top-level help, without loading the module. */
  summary: string;
  load(): Promise<CommandModule>;
}

export const COMMANDS: readonly CommandEntry[] = [
  {
    name: "run",
    summary: "register with a coordinator and mine jobs until stopped (the default command)",
    load: () => import("./commands/run.js"),
  },
  {
    name: "demo",
    summary: "the whole flow on this host: a local coordinator, a generated tiny model, signed receipts",
    load: () => import("./commands/demo.js"),
  },
  {
    name: "telemetry",
    summary: "show GPU state (NVML; nvidia-smi fallback): table, --json or --prometheus",
    load: () => import("./commands/telemetry.js"),
  },
  {
    name: "keys",
    summary: "manage the Ed25519 key that signs this miner's receipts",
    load: () => import("./commands/keys.js"),
  },
  {
    name: "verify",
    summary: "verify the Ed25519 signature of a receipt (the miner's or a coordinator's)",
    load: () => import("./commands/verify.js"),
  },
  {
    name: "receipts",
    summary: "list and summarise the receipts log: counts by kind, verification, units per model",
    load: () => import("./commands/receipts.js"),
  },
  {
    name: "earnings",
    summary:
      "what the whole host earned per day, GPU and model, reconciled against the coordinator's receipts",
    load: () => import("./commands/earnings.js"),
  },
  {
    name: "status",
    summary: "why a running host gets (or gets no) jobs: the last minutes per worker, one verdict each",
    load: () => import("./commands/status.js"),
  },
  {
    name: "doctor",
    summary: "check this host: Node, NVML/GPU, inference runtime, models, state, keys, coordinator",
    load: () => import("./commands/doctor.js"),
  },
  {
    name: "service",
    summary: "print a hardened systemd unit for this miner (or install it with --install, as root)",
    load: () => import("./commands/service.js"),
  },
  {
    name: "bench",
    summary: "how fast this host mines: one job at a time vs batched sequences, side by side",
    load: () => import("./commands/bench.js"),
  },
  {
    name: "gpu",
    summary: "GPU maintenance: `gpu build` compiles the CUDA backend for this host's GPUs (offline)",
    load: () => import("./commands/gpu.js"),
  },
  {
    name: "coordinator",
    summary: "run a local AITBC coordinator (both dialects) to smoke-test a miner",
    load: () => import("./commands/coordinator.js"),
  },
];

const HELP_OR_VERSION = new Set(["-h", "--help", "-V", "--version"]);

function baseProgram(): Command {
  return new Command()
    .name("aitbc-native-miner")
    .description(
      "AITBC GPU miner: polls a coordinator for inference jobs, runs them in-process with llama.cpp " +
        "(CUDA when there is a GPU), and submits each result with an Ed25519-signed receipt.",
    )
    .version(version, "-V, --version", "print the version")
    .helpOption("-h, --help", "show help for a command")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(str) });
}

function finish(program: Command): Command {
  for (const cmd of program.commands) cmd.exitOverride();
  return program;
}

/** The program with every command loaded (complete help trees, tests). */
export async function buildProgram(): Promise<Command> {
  const program = baseProgram();
  for (const entry of COMMANDS) (await entry.load()).register(program);
  return finish(program);
}

/**
 * Only what this argv needs: the command it names (or `run`, the default), with the others as
 * one-line entries for the help listing. Top-level `--help`/`--version` load no command at all.
 */
export async function programFor(argv: readonly string[]): Promise<Command> {
  const args = argv.slice(2);
  const program = baseProgram();
  const named = COMMANDS.find((c) => c.name === args.find((a) => !a.startsWith("-")));
  const topLevelOnly = !named && args.length > 0 && args.every((a) => HELP_OR_VERSION.has(a));
  const chosen = topLevelOnly ? null : (named ?? COMMANDS[0]!);
  for (const entry of COMMANDS) {
    if (entry === chosen) (await entry.load()).register(program);
    else program.command(entry.name, { isDefault: entry.name === "run" }).description(entry.summary);
  }
  return finish(program);
}

/** Errors that mean "a bad setting", reported in one line (by name: their modules load lazily). */
const SETTING_ERRORS = new Set(["ConfigError", "KeyFileError"]);

/** Parse argv and run; resolves with the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = await programFor(argv);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (
        err.code === "commander.helpDisplayed" ||
        err.code === "commander.version" ||
        err.code === "commander.help"
      ) {
        return 0;
      }
      return 2;
    }
    if (err instanceof Error && SETTING_ERRORS.has(err.name)) {
      process.stderr.write(`aitbc-native-miner: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  return typeof process.exitCode === "number" ? process.exitCode : 0;
}
