#!/usr/bin/env node
// The local coordinator in its own process, driven over IPC by bench/lib.mjs
// (startCoordinatorProcess). A real coordinator is remote: in its own process its work (routing,
// checking the miner's receipt, signing its own) runs on its own core instead of being charged to
// the loop under test. Event times are taken here, on a clock every process on the host shares
// (performance.timeOrigin + performance.now()), and sent only when asked for.
import { jobClock, startCoordinator } from "./lib.mjs";

const opts = JSON.parse(process.argv[2] ?? "{}");
const { coordinator, coordinatorKey } = await startCoordinator(opts);
const origin = performance.timeOrigin;
const clock = jobClock(coordinator);
const waiting = new Set();
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

const onEvent = () => {
  for (const w of waiting) {
    if (w.ids.every((id) => clock.settled.has(id))) {
      waiting.delete(w);
      clearTimeout(w.timer);
      process.send({ id: w.id, ok: true });
    }
  }
};
coordinator.on(onEvent);

process.on("message", async (m) => {
  const reply = (body) => process.send({ id: m.id, ...body });
  switch (m.type) {
    case "enqueue":
      return reply({ ids: m.jobs.map((j) => coordinator.enqueue(j)) });
    case "wait": {
      const w = { id: m.id, ids: m.ids, timer: null };
      w.timer = setTimeout(() => {
        waiting.delete(w);
        reply({ ok: false, error: `not settled within ${m.timeoutMs} ms` });
      }, m.timeoutMs);
      waiting.add(w);
      return onEvent();
    }
    case "times":
      return reply({
        times: m.ids.map((id) => {
          const e = clock.at.get(id) ?? {};
          const abs = (t) => (t === undefined ? null : origin + t);
          return { enqueued: abs(e.enqueued), assigned: abs(e.assigned), completed: abs(e.completed) };
        }),
      });
    case "state":
      return reply({ states: m.ids.map((id) => coordinator.job(id)?.state ?? null) });
    case "stats":
      // Its CPU time too: a loop that makes the coordinator work harder pays for it somewhere.
      return reply({ stats: { ...coordinator.stats(), cpuMs: cpuMs() } });
    case "close":
      await coordinator.close();
      reply({});
      return process.disconnect();
  }
});
process.send({ type: "ready", url: coordinator.url, publicKeyHex: coordinatorKey.publicKeyHex });
