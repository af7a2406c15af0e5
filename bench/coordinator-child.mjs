#!/usr/bin/env node
// The local coordinator in its own process, driven over IPC by bench/lib.mjs
// (startCoordinatorProcess). A real coordinator is remote: in its own process its work (routing,
// checking the miner's receipt, signing its own) runs on its own core instead of being charged to
// the loop under test. Event times are taken here, on a clock every process on the host shares
// (performance.timeOrigin + performance.now()), and sent only when asked for.
import { createConnection, createServer } from "node:net";
import { jobClock, startCoordinator } from "./lib.mjs";

const { linkDelayMs = 0, ...opts } = JSON.parse(process.argv[2] ?? "{}");
const { coordinator, coordinatorKey } = await startCoordinator(opts);

/**
 * A link with `delayMs` of latency each way in front of the coordinator (a TCP proxy that holds
 * every chunk that long, in order), here so that its CPU is not the loop's either. A coordinator
 * across a network is never 0 ms away; a loop that waits on it one call at a time pays for that.
 */
async function delayedLink(target, delayMs) {
  const { port, hostname } = new URL(target);
  const server = createServer((client) => {
    const upstream = createConnection({ port: Number(port), host: hostname, noDelay: true });
    // No Nagle in the proxy itself: both ends already turn it off, and a link only adds latency.
    client.setNoDelay(true);
    const relay = (from, to) => {
      from.on("data", (chunk) => setTimeout(() => to.destroyed || to.write(chunk), delayMs));
      from.on("end", () => setTimeout(() => to.end(), delayMs));
      from.on("error", () => to.destroy());
    };
    relay(client, upstream);
    relay(upstream, client);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, server };
}
const link = linkDelayMs > 0 ? await delayedLink(coordinator.url, linkDelayMs) : null;
const origin = performance.timeOrigin;
const clock = jobClock(coordinator);
const waiting = new Set();
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

// Each waiter counts down the jobs it still waits for: checking all of them on every event cost
// the coordinator's process O(jobs) per event, on the clock of the loop being measured.
const onEvent = (ev) => {
  for (const w of waiting) {
    if (ev && clock.settled.has(ev.jobId)) w.left.delete(ev.jobId);
    if (w.left.size === 0) {
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
      const w = { id: m.id, left: new Set(m.ids.filter((id) => !clock.settled.has(id))), timer: null };
      w.timer = setTimeout(() => {
        waiting.delete(w);
        reply({ ok: false, error: `not settled within ${m.timeoutMs} ms` });
      }, m.timeoutMs);
      waiting.add(w);
      return onEvent(null);
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
      link?.server.close();
      await coordinator.close();
      reply({});
      return process.disconnect();
  }
});
process.send({ type: "ready", url: link?.url ?? coordinator.url, publicKeyHex: coordinatorKey.publicKeyHex });
