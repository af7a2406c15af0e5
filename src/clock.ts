// Schedules run on the monotonic clock, so a wall-clock step (NTP on a VM at boot, an operator's
// `date -s`) in either direction changes no poll, heartbeat, deadline, backoff or health verdict.
// Date.now() is only for timestamps shown to people or sent to the coordinator.

/** A clock in milliseconds; only differences between its readings mean anything. */
export type Clock = () => number;

/** CLOCK_MONOTONIC through libuv (what node's timers use too): never steps, never goes back. */
export const monotonicNow: Clock = () => performance.now();

/**
 * The monotonic instant of a wall-clock instant written down before a restart (a journaled job's
 * deadline): the one place a wall time becomes a schedule, read once at the restart.
 */
export function monotonicFromWall(wallAt: number, now = monotonicNow(), wallNow = Date.now()): number {
  return now + (wallAt - wallNow);
}
