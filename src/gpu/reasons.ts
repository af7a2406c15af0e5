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
  let rest = BigInt(Math.max(0, Math.trunc(mask)));
  for (const [bit, name] of REASONS) {
    if ((rest & BigInt(bit)) !== 0n) {
      out.push(name);
      rest &= ~BigInt(bit);
    }
  }
  if (rest !== 0n) out.push(`0x${rest.toString(16)}`);
  return out;
}
