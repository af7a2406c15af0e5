#!/usr/bin/env node
// Thin launcher: the CLI is compiled to dist/ by `npm run build` (run by `npm ci` through `prepare`).
import { main } from "../dist/cli.js";

// `aitbc-native-miner telemetry --json | head`: a closed pipe ends the command quietly.
process.stdout.on("error", (err) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

main(process.argv).then(
  (code) => {
    if (typeof code === "number") process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`aitbc-native-miner: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
