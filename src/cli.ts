// Command-line entry: every command registers itself; errors in usage or config exit with code 2.
import { Command, CommanderError } from "commander";
import { register as registerBench } from "./commands/bench.js";
import { register as registerCoordinator } from "./commands/coordinator.js";
import { register as registerDemo } from "./commands/demo.js";
import { register as registerDoctor } from "./commands/doctor.js";
import { register as registerKeys } from "./commands/keys.js";
import { register as registerReceipts } from "./commands/receipts.js";
import { register as registerRun } from "./commands/run.js";
import { register as registerService } from "./commands/service.js";
import { register as registerTelemetry } from "./commands/telemetry.js";
import { register as registerVerify } from "./commands/verify.js";
import { ConfigError } from "./config.js";
import { KeyFileError } from "./receipts/index.js";
import { version } from "./version.js";

export function buildProgram(): Command {
  const program = new Command();
  program
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
  registerRun(program);
  registerDemo(program);
  registerTelemetry(program);
  registerKeys(program);
  registerVerify(program);
  registerReceipts(program);
  registerDoctor(program);
  registerService(program);
  registerBench(program);
  registerCoordinator(program);
  for (const cmd of program.commands) cmd.exitOverride();
  return program;
}

/** Parse argv and run; resolves with the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
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
    if (err instanceof ConfigError || err instanceof KeyFileError) {
      process.stderr.write(`aitbc-native-miner: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  return typeof process.exitCode === "number" ? process.exitCode : 0;
}
