#!/usr/bin/env node
// The miner's loop vs a plain port of the seed's loop (bench/seed-loop.mjs), both against the
// local coordinator with a backend that answers at once, so only the loop's own cost remains:
//   1. jobs/s with a full queue (rate limits lifted), miner at concurrency 1, 2, 4, from the first
//      hand-out to the last result (and, beside it, from the start of the loop);
//   2. per-job overhead, hand-out → acknowledged result (coordinator events), p50/p99, beside
//      micro-measurements of its pieces: one HTTP round trip, one fsync'd record, one signing;
//   3. pickup p50/p99 and polls/min for jobs arriving one at a time at seeded random gaps, on a
//      coordinator with the reference rate limits (100 polls/min), miner at its defaults.
//   node bench/loop.mjs [--quick]
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import {
  benchArgs,
  buildMiner,
  buildMinerReceipt,
  DEFAULT_RATE_LIMITS,
  DurableStore,
  generateKeyPair,
  localCoordinatorLongPolls,
  mmm,
  printTable,
  prng,
  ratio,
  sleep,
  startCoordinatorProcess,
  summary,
  writeResult,
  zeroBackend,
} from "./lib.mjs";
import { createSeedLoop } from "./seed-loop.mjs";

const { quick, smoke } = benchArgs();
const JOBS = smoke ? 4 : quick ? 20 : 100;
const REPS = quick ? 1 : 3;
// On loopback a run of 100 jobs lasts a fraction of a second, where one hiccup of a shared host
// moves the median: longer and more runs there.
const QUEUE_JOBS = smoke ? 4 : quick ? 20 : 300;
const QUEUE_REPS = quick ? 1 : 5;
const ARRIVALS = smoke ? 1 : quick ? 2 : 6;
const job = (i) => ({ payload: { model: "zero", prompt: `job ${i}`, max_tokens: 1, temperature: 0 } });

/**
 * One loop against a fresh coordinator in its own process (bench/coordinator-child.mjs), as a
 * remote coordinator would be; returns timings from the coordinator's events.
 */
async function runLoop(
  kind,
  concurrency,
  { jobs, rateLimits, gaps, settings, coordinatorOpts = {}, protocol, state },
) {
  const co = await startCoordinatorProcess({ ...(rateLimits ? { rateLimits } : {}), ...coordinatorOpts });
  const ids = [];
  if (!gaps) ids.push(...(await co.enqueue(Array.from({ length: jobs }, (_, i) => job(i)))));
  const loop =
    kind === "seed"
      ? createSeedLoop({ url: co.url, minerId: "seed-miner", backend: zeroBackend() })
      : buildMiner({
          url: co.url,
          backend: zeroBackend(),
          coordinatorKey: co.coordinatorKey,
          concurrency,
          settings,
          protocol,
          ...(state === MEMORY ? { stateInMemory: true } : state ? { stateRoot: state } : {}),
        });
  const t0 = co.now();
  const before = await co.stats();
  const pollsBefore = pollCount(before);
  const cpu0 = process.cpuUsage();
  if (gaps) {
    // Let the loop settle into its idle rhythm first, as a miner that has been up a while.
    await sleep(quick ? 300 : 1500);
    for (let i = 0; i < gaps.length; i++) {
      await sleep(gaps[i]);
      ids.push(...(await co.enqueue([job(i)])));
    }
  }
  await co.waitSettled(ids, 120_000);
  const seconds = (co.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const fsyncs = loop.fsyncs?.() ?? 0;
  const stats = await co.stats();
  const polls = pollCount(stats) - pollsBefore;
  await loop.stop();
  const ev = await co.times(ids);
  const completed = (await co.states(ids)).filter((s) => s === "COMPLETED").length;
  await co.close();
  // Throughput from the first hand-out to the last result, for either loop: start-up (the
  // miner opens its state, registers and compiles its modules; the seed only registers) is
  // measured on its own by the footprint bench and the first-job figure.
  const firstAssigned = Math.min(...ev.map((e) => e.assigned ?? Number.POSITIVE_INFINITY));
  const lastCompleted = Math.max(...ev.map((e) => e.completed ?? Number.NEGATIVE_INFINITY));
  return {
    seconds,
    completed,
    jobsPerSecond: completed / ((lastCompleted - firstAssigned) / 1000),
    jobsPerSecondWithStart: completed / seconds,
    overheadMs: ev.filter((e) => e.completed !== null).map((e) => e.completed - e.assigned),
    pickupMs: ev.filter((e) => e.assigned !== null).map((e) => e.assigned - e.enqueued),
    pollsPerMin: polls / (seconds / 60),
    rateLimited: stats.rateLimited,
    // Per job: CPU of this process (the loop, all its threads) and of the coordinator's, fsyncs.
    loopCpuMs: (cpu.user + cpu.system) / 1000 / Math.max(1, completed),
    coordinatorCpuMs: (stats.cpuMs - before.cpuMs) / Math.max(1, completed),
    fsyncsPerJob: fsyncs / Math.max(1, completed),
  };
}

function isTmpfs(dir) {
  try {
    return readFileSync("/proc/mounts", "utf8")
      .split("\n")
      .some((l) => l.split(" ")[1] === dir && l.split(" ")[2] === "tmpfs");
  } catch {
    return false;
  }
}

function pollCount(stats) {
  const r = stats.byRoute;
  return (r["POST /v1/miners/poll"] ?? 0) + (r["GET /v1/jobs/available"] ?? 0);
}

// ---- 1 + 2: full queue -----------------------------------------------------------------------
const configs = [
  ["seed loop (claim)", "seed", 1, "claim"],
  ["miner c=1", "miner", 1, "aitbc"],
  ["miner c=2", "miner", 2, "aitbc"],
  ["miner c=4", "miner", 4, "aitbc"],
  ["miner c=4, claim dialect", "miner", 4, "claim"],
];
// The same miner with its state directory in RAM (tmpfs: fdatasync returns at once), the code
// unchanged: what the disk's fdatasyncs cost, which the seed's loop does not pay. Not a way to
// run a miner (a power loss takes the state with it).
const RAM_DIR = "/dev/shm";
const ramConfigs = isTmpfs(RAM_DIR)
  ? [
      ["miner c=2, state in RAM", "miner", 2, "aitbc", RAM_DIR],
      ["miner c=4, state in RAM", "miner", 4, "aitbc", RAM_DIR],
    ]
  : [];
// And with no durable state at all (the outbox and journal over a Map, bench only): the loop's
// own cost, with the same signing, verification, validation and HTTP as above.
const MEMORY = "memory";
const memoryConfigs = [
  ["miner c=2, no durable state", "miner", 2, "aitbc", MEMORY],
  ["miner c=4, no durable state", "miner", 4, "aitbc", MEMORY],
];
// --smoke: the seed and one miner per table, enough to fill each table's ratio column.
const fullConfigs = smoke
  ? [configs[0], configs[1], memoryConfigs[0]]
  : [...configs, ...ramConfigs, ...memoryConfigs];
const full = Object.fromEntries(fullConfigs.map(([name]) => [name, []]));
// Lifted limits and no poll spacing: the seed polls again at once after a job, so does the miner.
const fullOpts = {
  jobs: QUEUE_JOBS,
  settings: { pollsPerWindow: Number.POSITIVE_INFINITY, idlePollIntervalMs: 10, longPollSeconds: 0 },
};
for (let rep = 0; rep < QUEUE_REPS; rep++) {
  // Rotate the order so that drift on a shared host does not favour one loop.
  for (let k = 0; k < fullConfigs.length; k++) {
    const [name, kind, c, protocol, state] = fullConfigs[(k + rep) % fullConfigs.length];
    full[name].push(await runLoop(kind, c, { ...fullOpts, protocol, state }));
  }
}
const seedMedian = summary(full["seed loop (claim)"].map((r) => r.jobsPerSecond)).median;
printTable(
  `loop, full queue: ${QUEUE_JOBS} jobs × ${QUEUE_REPS} runs, zero-cost backend, limits lifted`,
  [
    "loop",
    "jobs/s min / median / max",
    "jobs/s with start-up, median",
    "overhead p50 ms",
    "overhead p99 ms",
    "CPU ms/job loop + coordinator",
    "fsyncs/job",
    "ratio (jobs/s vs seed)",
  ],
  fullConfigs.map(([name]) => {
    const runs = full[name];
    const o = summary(runs.flatMap((r) => r.overheadMs));
    const med = summary(runs.map((r) => r.jobsPerSecond)).median;
    const m = (k) => summary(runs.map((r) => r[k])).median;
    return [
      name,
      mmm(runs.map((r) => r.jobsPerSecond)),
      m("jobsPerSecondWithStart").toFixed(0),
      o.p50.toFixed(2),
      o.p99.toFixed(2),
      `${m("loopCpuMs").toFixed(2)} + ${m("coordinatorCpuMs").toFixed(2)}`,
      m("fsyncsPerJob").toFixed(1),
      ratio(med, seedMedian),
    ];
  }),
);

// ---- 1b: full queue across a link with latency -----------------------------------------------
// The same, with the coordinator LINK_MS away each way (a delaying proxy in the coordinator's
// process): the seed waits out three round trips per job in a row, the miner overlaps its jobs.
const LINK_MS = 2;
// The claim-dialect miner too: it makes the seed's three round trips per job, where the aitbc
// dialect makes two.
const linkConfigs = smoke ? configs.slice(0, 2) : configs;
const linked = Object.fromEntries(linkConfigs.map(([name]) => [name, []]));
for (let rep = 0; rep < REPS; rep++) {
  for (let k = 0; k < linkConfigs.length; k++) {
    const [name, kind, c, protocol] = linkConfigs[(k + rep) % linkConfigs.length];
    linked[name].push(
      await runLoop(kind, c, {
        ...fullOpts,
        jobs: JOBS,
        protocol,
        coordinatorOpts: { linkDelayMs: LINK_MS },
      }),
    );
  }
}
const linkedSeed = summary(linked["seed loop (claim)"].map((r) => r.jobsPerSecond)).median;
printTable(
  `loop, full queue across a ${LINK_MS} ms link each way (${2 * LINK_MS} ms round trip): ${JOBS} jobs × ${REPS} runs`,
  ["loop", "jobs/s min / median / max", "overhead p50 ms", "overhead p99 ms", "ratio (jobs/s vs seed)"],
  linkConfigs.map(([name]) => {
    const runs = linked[name];
    const o = summary(runs.flatMap((r) => r.overheadMs));
    return [
      name,
      mmm(runs.map((r) => r.jobsPerSecond)),
      o.p50.toFixed(2),
      o.p99.toFixed(2),
      ratio(summary(runs.map((r) => r.jobsPerSecond)).median, linkedSeed),
    ];
  }),
);

// ---- pieces of the overhead ------------------------------------------------------------------
const N = smoke ? 5 : quick ? 20 : 300;
const micro = {};
{
  const co = await startCoordinatorProcess();
  const url = `${co.url}/v1/jobs/available?miner_id=probe`;
  const http = [];
  for (let i = 0; i < N + 20; i++) {
    const t = performance.now();
    const res = await request(url);
    await res.body.dump();
    if (i >= 20) http.push(performance.now() - t);
  }
  micro.httpRoundTripMs = summary(http);
  await co.close();
}
{
  const store = new DurableStore(mkdtempSync(join(tmpdir(), "aitbc-bench-store-")), (v) => v);
  await store.open();
  const puts = [];
  for (let i = 0; i < Math.ceil(N / 3); i++) {
    const t = performance.now();
    await store.put(`job-${i}`, { jobId: `job-${i}`, result: "ok", receipt: { signature: "x".repeat(128) } });
    puts.push(performance.now() - t);
  }
  micro.durablePutMs = summary(puts);
}
{
  const key = generateKeyPair();
  const signs = [];
  const now = Math.floor(Date.now() / 1000);
  for (let i = 0; i < N + 20; i++) {
    const t = performance.now();
    buildMinerReceipt(
      {
        jobId: `job-${i}`,
        minerId: "bench",
        model: "zero",
        prompt: "p",
        output: "ok",
        units: 1,
        startedAt: now,
        completedAt: now,
        durationMs: 0,
      },
      key,
    );
    if (i >= 20) signs.push(performance.now() - t);
  }
  micro.signMs = summary(signs);
}
const m1 = summary(full["miner c=1"].flatMap((r) => r.overheadMs));
const s1 = summary(full["seed loop (claim)"].flatMap((r) => r.overheadMs));
printTable(
  "loop, per-job overhead (hand-out → acknowledged result) and its pieces, ms",
  ["what", "p50", "p99", "ratio (p50 vs seed)"],
  [
    ["seed loop: claim → complete", s1.p50.toFixed(2), s1.p99.toFixed(2), "1.00×"],
    ["miner c=1: poll → result acknowledged", m1.p50.toFixed(2), m1.p99.toFixed(2), ratio(m1.p50, s1.p50)],
    [
      "  one HTTP round trip (undici, loopback)",
      f2(micro.httpRoundTripMs.p50),
      f2(micro.httpRoundTripMs.p99),
      "",
    ],
    [
      "  one durable record put (append + fdatasync)",
      f2(micro.durablePutMs.p50),
      f2(micro.durablePutMs.p99),
      "",
    ],
    ["  one receipt signing (Ed25519)", f2(micro.signMs.p50), f2(micro.signMs.p99), ""],
  ],
);
function f2(x) {
  return x.toFixed(2);
}

// ---- 3: pickup on the rate-limited coordinator -----------------------------------------------
const rnd = prng(20261128);
// Gaps of 0.5-4 s: shorter than the seed's 2 s sleep sometimes, longer other times.
const gaps = smoke ? [500] : Array.from({ length: ARRIVALS }, () => Math.round(500 + rnd() * 3500));
const pickupConfigs = [
  ["seed loop (2 s idle sleep)", "seed", {}, {}],
  ["miner, defaults (100 polls/min budget)", "miner", {}, {}],
  ["miner, long-poll coordinator (holds 20 s)", "miner", {}, { longPollMaxSeconds: 20 }],
].slice(0, smoke ? 2 : 3);
const pickup = [];
for (const [name, kind, settings, coordinatorOpts] of pickupConfigs) {
  const r = await runLoop(kind, 1, {
    gaps,
    rateLimits: DEFAULT_RATE_LIMITS,
    settings,
    coordinatorOpts,
    protocol: "aitbc",
  });
  pickup.push({ name, ...r });
}
const seedPick = summary(pickup[0].pickupMs).p50;
printTable(
  `loop, pickup: ${ARRIVALS} jobs one at a time, seeded gaps 0.5-4 s, reference limits (${DEFAULT_RATE_LIMITS.poll} polls/min)`,
  ["loop", "pickup p50 ms", "pickup p99 ms", "polls/min", "429s", "ratio (p50 vs seed)"],
  pickup.map((r) => {
    const s = summary(r.pickupMs);
    return [
      r.name,
      s.p50.toFixed(0),
      s.p99.toFixed(0),
      r.pollsPerMin.toFixed(1),
      r.rateLimited,
      ratio(s.p50, seedPick),
    ];
  }),
);
const longPoll = localCoordinatorLongPolls();

await writeResult(
  "loop",
  {
    settings: {
      queueJobs: QUEUE_JOBS,
      queueReps: QUEUE_REPS,
      jobs: JOBS,
      reps: REPS,
      arrivals: ARRIVALS,
      gapsMs: gaps,
    },
    fullQueue: Object.fromEntries(
      fullConfigs.map(([name]) => [
        name,
        {
          jobsPerSecond: summary(full[name].map((r) => r.jobsPerSecond)),
          jobsPerSecondWithStartUp: summary(full[name].map((r) => r.jobsPerSecondWithStart)),
          overheadMs: summary(full[name].flatMap((r) => r.overheadMs)),
          loopCpuMsPerJob: summary(full[name].map((r) => r.loopCpuMs)),
          coordinatorCpuMsPerJob: summary(full[name].map((r) => r.coordinatorCpuMs)),
          fsyncsPerJob: summary(full[name].map((r) => r.fsyncsPerJob)),
        },
      ]),
    ),
    overheadPiecesMs: micro,
    acrossLink: {
      linkDelayMsEachWay: LINK_MS,
      loops: Object.fromEntries(
        linkConfigs.map(([name]) => [
          name,
          {
            jobsPerSecond: summary(linked[name].map((r) => r.jobsPerSecond)),
            overheadMs: summary(linked[name].flatMap((r) => r.overheadMs)),
          },
        ]),
      ),
    },
    pickup: pickup.map((r) => ({
      name: r.name,
      pickupMs: summary(r.pickupMs),
      pollsPerMin: r.pollsPerMin,
      rateLimited: r.rateLimited,
    })),
    longPoll: longPoll ? "measured (the last pickup row)" : "not supported",
  },
  { quick },
);
