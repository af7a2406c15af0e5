// nvmlClocksEventReasons bits (nvml.h), decoded to the names nvidia-smi and DCGM use.
const REASONS: readonly [number, string][] = [
  [0x1, "gpu_idle"],
  [0x2, "applications_clocks_setting"],
  [0x4, "sw_power_cap"],
  [0x8, "hw_slowdown"],
  [0x10, "sync_boost"],
  [0x20, "sw_thermal_slowdown"],
  [0x40, "hw_thermal_slowdown"],
  [0x80, "hw_power_brake_slowdown"],
  [0x100, "display_clock_setting"],
];

/** Names of the set bits; unknown bits come out as "0x<hex>" so nothing is hidden. */
export function decodeClockEventReasons(mask: number): string[] {
  const out: string[] = [];
  if (mask === 0) return out;
  // Known bits are all below 2^9; split so bits above 2^32 survive (no 32-bit truncation).
  const m = Math.max(0, Math.trunc(mask));
  const high = Math.floor(m / 2 ** 32);
  let low = m >>> 0;
  for (const [bit, name] of REASONS) {
    if ((low & bit) !== 0) {
      out.push(name);
      low = (low & ~bit) >>> 0;
    }
  }
  const rest = high * 2 ** 32 + low;
  if (rest !== 0) out.push(`0x${rest.toString(16)}`);
  return out;
}
