// NVML health events from the addon (native/health_events.cc), every object checked before use:
// the addon is another build, possibly older, and its answers cross a boundary.
import { z } from "zod";
import type { NvmlAddon, NvmlEvent, NvmlEventsStart } from "../../binding.js";
import type { Logger } from "../log.js";

const count = z.number().int().nonnegative();

export const NvmlEventSchema = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("event"),
    index: count.nullable(),
    uuid: z.string().min(1).nullable(),
    type: z.enum(["xid", "double_bit_ecc", "single_bit_ecc", "other"]),
    eventType: count,
    xid: count.nullable(),
    data: count,
    timestamp: z.number().finite(),
  }),
  z.object({
    kind: z.literal("error"),
    code: z.number().int(),
    message: z.string(),
    timestamp: z.number().finite(),
  }),
]);

export const NvmlEventsStartSchema = z.object({
  running: z.boolean(),
  reason: z.string().nullable(),
  waitCall: z.string().nullable(),
  devices: z.array(
    z.object({
      index: count,
      uuid: z.string().min(1).nullable(),
      status: z.enum(["registered", "unsupported", "lost", "error"]),
      eventTypes: z.array(z.string()),
      code: z.number().int().nullable(),
      message: z.string().nullable(),
    }),
  ),
});

export interface EventWatch {
  readonly status: NvmlEventsStart;
  /** Stops the addon's thread (joined before this returns); idempotent. */
  stop(): void;
}

/**
 * Starts the addon's event watcher. Null when the addon predates events. Events that fail
 * validation are logged once per kind of fault and dropped; a listener that throws is logged,
 * never allowed to reach the addon's callback.
 */
export function watchNvmlEvents(
  addon: NvmlAddon,
  onEvent: (e: NvmlEvent) => void,
  log: Logger,
): EventWatch | null {
  if (typeof addon.startEvents !== "function" || typeof addon.stopEvents !== "function") return null;
  const stopEvents = addon.stopEvents.bind(addon);
  const warned = new Set<string>();
  let stopped = false;
  const raw = addon.startEvents((value: unknown) => {
    if (stopped) return;
    const parsed = NvmlEventSchema.safeParse(value);
    if (!parsed.success) {
      const why = parsed.error.issues[0]?.message ?? "invalid";
      if (!warned.has(why)) {
        warned.add(why);
        log.warn({ event: "gpu_health_event_invalid", why }, `NVML addon sent an invalid event: ${why}`);
      }
      return;
    }
    try {
      onEvent(parsed.data);
    } catch (err) {
      log.error(
        { event: "gpu_health_listener_failed", err: (err as Error).message },
        "health event listener threw",
      );
    }
  });
  const status = NvmlEventsStartSchema.safeParse(raw);
  if (!status.success) {
    if (raw && typeof raw === "object" && (raw as { running?: unknown }).running === true) stopEvents();
    throw new Error(`NVML addon: startEvents answered an invalid result: ${status.error.issues[0]?.message}`);
  }
  return {
    status: status.data,
    stop() {
      if (stopped) return;
      stopped = true;
      if (status.data.running) stopEvents();
    },
  };
}
