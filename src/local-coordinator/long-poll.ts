// Long-poll (`longPollMaxSeconds`): a poll that finds no job is held until one may have been
// queued (or the wait the miner asked for, capped, runs out), then answered as a poll at that
// moment. The rate limit counted it once, when it arrived.
import type { CoordinatorCore } from "./core.js";
import type { Ctx, Reply } from "./http.js";

type Obj = Record<string, unknown>;

export async function holdPoll(core: CoordinatorCore, ctx: Ctx, minerId: string): Promise<Reply> {
  const asked = Number((ctx.body as Obj | undefined)?.["max_wait_seconds"] ?? 0);
  const waitMs = Math.min(Number.isFinite(asked) ? asked : 0, core.o.longPollMaxSeconds ?? 0) * 1000;
  if (waitMs <= 0) return { status: 204 };
  const { req } = ctx;
  const until = core.tick() + waitMs;
  let gone = false;
  const onClose = () => {
    gone = true;
    core.jobsChanged.emit("change");
  };
  req.socket.once("close", onClose);
  try {
    while (!gone && !core.closed) {
      const left = until - core.tick();
      if (left <= 0) return { status: 204 };
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          core.jobsChanged.off("change", done);
          resolve();
        };
        const timer = setTimeout(done, left);
        core.jobsChanged.once("change", done);
      });
      if (gone || core.closed) break;
      const reply = core.handOut(minerId);
      if (reply.status !== 204) return reply;
    }
    return { status: 204 };
  } finally {
    req.socket.off("close", onClose);
  }
}
