#!/usr/bin/env node
// Footprint: start-up of `aitbc-native-miner --version` vs `node -e 0` (spawned, alternating),
// RSS of an idle miner and after 1,000 jobs (zero-cost backend, its own process), and the wall
// time of `aitbc-native-miner demo` with its default arguments.
//   node bench/footprint.mjs [--quick]
import { execFile, fork } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  benchArgs,
  finished,
  jobClock,
  mmm,
  printTable,
  ratio,
  root,
  sleep,
  startCoordinator,
  summary,
  writeResult,
} from "./lib.mjs";

const { quick, smoke } = benchArgs();
const N = smoke ? 1 : quick ? 3 : 8;
const JOBS = smoke ? 30 : quick ? 100 : 1000;
// --smoke leaves the demo out: the test suite runs the demo itself (test/e2e/cli.test.ts).
const DEMOS = smoke ? 0 : quick ? 1 : 3;
const run = promisify(execFile);
const cli = join(root, "bin", "aitbc-native-miner.js");

async function wall(args) {
  const t0 = performance.now();
  await run(process.execPath, args, { cwd: root, timeout: 180_000 });
  return performance.now() - t0;
}

// ---- start-up ---------------------------------------------------------------------------------
const startup = { version: [], node: [] };
await wall(["-e", "0"]); // warm the file cache for both
await wall([cli, "--version"]);
for (let i = 0; i < N; i++) {
  for (const k of i % 2 === 0 ? ["version", "node"] : ["node", "version"]) {
    startup[k].push(await wall(k === "node" ? ["-e", "0"] : [cli, "--version"]));
  }
}

// ---- RSS --------------------------------------------------------------------------------------
const { coordinator, coordinatorKey } = await startCoordinator();
const child = fork(
  join(root, "bench", "footprint-child.mjs"),
  [coordinator.url, coordinatorKey.publicKeyHex],
  {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  },
);
const ask = async () => {
  child.send("rss");
  for (;;) {
    const [msg] = await once(child, "message");
    if (msg.rss) return msg;
  }
};
await once(child, "message");
await sleep(smoke ? 300 : quick ? 1000 : 3000); // registered, heartbeating, polling idle
const idle = await ask();
const clock = jobClock(coordinator);
const ids = [];
for (let i = 0; i < JOBS; i++) {
  ids.push(
    coordinator.enqueue({ payload: { model: "zero", prompt: `job ${i}`, max_tokens: 1, temperature: 0 } }),
  );
}
await coordinator.waitFor(() => finished(clock, ids), 300_000);
clock.off();
const completed = ids.filter((id) => coordinator.job(id)?.state === "COMPLETED").length;
await sleep(500);
const after = await ask();
child.send("stop");
await once(child, "exit");
await coordinator.close();

// ---- demo -------------------------------------------------------------------------------------
// A cache kept between bench runs, as a user's repeated demos keep theirs: the tiny model is
// generated once (0.5 MB, milliseconds), the key and receipts log are reused.
const cacheDir = join(root, ".cache", "bench-demo");
const demo = [];
for (let i = 0; i < DEMOS; i++) demo.push(await wall([cli, "demo", "--cache-dir", cacheDir]));

const mb = (b) => `${(b / 1048576).toFixed(1)} MiB`;
const v = summary(startup.version);
const n = summary(startup.node);
printTable(
  `footprint: start-up ${N} alternating spawns each, RSS of a miner in its own process, demo ${DEMOS} run(s)`,
  ["what", "min / median / max", "ratio"],
  [
    ["node -e 0, ms", mmm(startup.node, 0), "1.00×"],
    ["aitbc-native-miner --version, ms", mmm(startup.version, 0), `${ratio(v.median, n.median)} node -e 0`],
    ["idle miner RSS", mb(idle.rss), "1.00×"],
    [`miner RSS after ${completed} jobs`, mb(after.rss), `${ratio(after.rss, idle.rss)} idle`],
    [
      "demo (5 jobs, concurrency 2, 24 tokens), s",
      DEMOS > 0
        ? mmm(
            demo.map((ms) => ms / 1000),
            2,
          )
        : "not run (--smoke)",
      "—",
    ],
  ],
);
await writeResult(
  "footprint",
  {
    settings: { spawns: N, jobs: JOBS, demos: DEMOS },
    startupMs: { nodeE0: n, version: v },
    rssBytes: { idle: idle.rss, afterJobs: after.rss, jobsCompleted: completed },
    heapUsedBytes: { idle: idle.heapUsed, afterJobs: after.heapUsed },
    demoSeconds: DEMOS > 0 ? summary(demo.map((ms) => ms / 1000)) : null,
  },
  { quick },
);
