// Helpers for the GPU health suites: waiting on a condition (generous deadline, nothing timed),
// and a fake NVML with an events file per test.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { type FakeDevice, fakeDevice } from "../fake-nvml/config.js";
import { tmp, useFakeConfig } from "./gpu.js";

/** Resolves with cond()'s first truthy value; fails naming `what` after `ms`. */
export async function eventually<T>(
  what: string,
  cond: () => T | null | undefined | false,
  ms = 60_000,
): Promise<T> {
  const end = performance.now() + ms;
  for (;;) {
    const v = cond();
    if (v) return v;
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let n = 0;

/**
 * A fake NVML of `count` GPUs (overrides by index) with an empty events file, made the current
 * FAKE_NVML_CONFIG; returns the events file (and the config's path, for child processes).
 */
export function fakeWithEvents(count: number, over: Record<number, Partial<FakeDevice>> = {}): string {
  return fakeWithEventsFiles(count, over).eventsFile;
}

export function fakeWithEventsFiles(
  count: number,
  over: Record<number, Partial<FakeDevice>> = {},
): { eventsFile: string; config: string } {
  const eventsFile = join(tmp, `events-${process.pid}-${n++}.txt`);
  writeFileSync(eventsFile, "");
  const devices = Array.from({ length: count }, (_, i) => fakeDevice(i, over[i] ?? {}));
  return { eventsFile, config: useFakeConfig({ eventsFile, devices }) };
}
