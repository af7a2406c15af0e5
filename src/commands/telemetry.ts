// `telemetry`: GPU facts as a table (gpustat-like), --json (docs/telemetry.md) or --prometheus,
// once or every N seconds with --watch (until SIGINT), each GPU with its health verdict
// (docs/gpu-health.md: counters every frame; with --watch, NVML's Xid/ECC events too).
import { hostname } from "node:os";
import type { Command } from "commander";
import { InvalidArgumentError, Option } from "commander";
import { type InferenceSummary, probeInference, summarize } from "../compute-check.js";
import { toPrometheus } from "../gpu/gpu-metrics.js";
import { createGpuInfoSource, GpuHealthMonitor } from "../gpu/index.js";
import { TELEMETRY_SCHEMA, toTable, toTelemetryJson } from "../gpu/telemetry-format.js";
import type { GpuInfoSource, GpuSnapshot } from "../gpu/types.js";
import { silentLogger } from "../log.js";
import { envOf, fromEnv } from "../settings.js";

interface TelemetryOptions {
  json?: boolean;
  prometheus?: boolean;
  watch?: number | true;
  nvmlLibrary?: string;
  nvidiaSmi?: boolean;
  pcieThroughput?: boolean;
  inference?: boolean;
  drained?: string[];
}

/** "GPU-uuid,1": UUIDs or indexes, the operator's drained list. */
function idList(v: string): string[] {
  const ids = v.split(",").map((x) => x.trim());
  if (ids.some((x) => x === "" || !/^(\d+|[A-Za-z0-9][A-Za-z0-9_.:-]*)$/.test(x)))
    throw new InvalidArgumentError("a comma-separated list of GPU UUIDs or indexes");
  return ids;
}

function seconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0.1 || n > 3600)
    throw new InvalidArgumentError("seconds between 0.1 and 3600");
  return n;
}

async function render(
  s: GpuSnapshot,
  opts: TelemetryOptions,
  inference: InferenceSummary | null,
  monitor: GpuHealthMonitor,
): Promise<string> {
  const health = new Map(monitor.observe(s).map((v) => [v.uuid, v]));
  if (opts.json) {
    const doc = inference ? { ...toTelemetryJson(s, health), inference } : toTelemetryJson(s, health);
    return `${JSON.stringify(doc, null, opts.watch ? 0 : 2)}\n`;
  }
  if (opts.prometheus) return toPrometheus(s);
  return toTable(s, hostname(), health) + (inference ? inferenceLine(inference) : "");
}

/** The line under the table: what `run` would advertise here, or why it would refuse. */
function inferenceLine(i: InferenceSummary): string {
  if (i.refusal) return `inference: run would refuse (exit 69): ${i.refusal.message}\n`;
  const devices = i.devices.length ? ` (${i.devices.join(", ")})` : "";
  return `inference: ${i.platform}${devices}${i.note ? ` — ${i.note}` : ""}\n`;
}

/** Started once, before the first frame: node-llama-cpp as `run` starts it, checked the same way. */
async function inferenceOnce(src: GpuInfoSource): Promise<InferenceSummary> {
  const snapshot = await src.snapshot().catch(() => null);
  return summarize(
    await probeInference({ snapshot, gpu: fromEnv("gpu"), allowCpu: fromEnv("allowCpuInference") }),
  );
}

async function once(
  src: GpuInfoSource,
  opts: TelemetryOptions,
  inference: InferenceSummary | null,
  monitor: GpuHealthMonitor,
): Promise<boolean> {
  try {
    process.stdout.write(await render(await src.snapshot(), opts, inference, monitor));
    return true;
  } catch (err) {
    process.stderr.write(`telemetry: ${(err as Error).message}\n`);
    return false;
  }
}

async function watch(
  src: GpuInfoSource,
  opts: TelemetryOptions,
  everySec: number,
  inference: InferenceSummary | null,
  monitor: GpuHealthMonitor,
): Promise<boolean> {
  let stop = false;
  let wake: (() => void) | null = null;
  const onSigint = () => {
    stop = true;
    wake?.();
  };
  process.on("SIGINT", onSigint);
  let ok = true;
  try {
    while (!stop) {
      let text: string;
      try {
        text = await render(await src.snapshot(), opts, inference, monitor);
      } catch (err) {
        // A transient failure (GPU lost, driver reload) shows on screen; the watch goes on.
        text = `telemetry: ${(err as Error).message}\n`;
        ok = false;
      }
      // Clear and home the cursor so each frame redraws in place.
      process.stdout.write(`\x1b[H\x1b[2J${text}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, everySec * 1000);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  } finally {
    process.off("SIGINT", onSigint);
  }
  return ok || stop;
}

export function register(program: Command): void {
  program
    .command("telemetry")
    .description("show GPU state (NVML; nvidia-smi fallback): table, --json or --prometheus")
    .option("--json", `print the stable JSON document (schema ${TELEMETRY_SCHEMA}, see docs/telemetry.md)`)
    .option(
      "--prometheus",
      "print Prometheus text exposition (DCGM-exporter metric names; the GPU series of /metrics)",
    )
    .addOption(
      new Option("--watch [seconds]", "redraw every N seconds until Ctrl-C (default 2)").argParser(seconds),
    )
    .option(
      "--nvml-library <path>",
      `path of libnvidia-ml.so.1 (default: env ${envOf("nvmlLibrary")} or the system one)`,
    )
    .option("--nvidia-smi", "read through nvidia-smi instead of NVML")
    .option("--pcie-throughput", "also read PCIe TX/RX throughput (slow: ~20 ms per GPU)")
    .addOption(
      new Option(
        "--drained <ids>",
        "GPUs the operator took out of service (UUIDs or indexes, comma-separated)",
      ).argParser(idList),
    )
    .option(
      "--inference",
      "also say what inference computes on, as run would advertise it (starts node-llama-cpp once: ~1 s)",
    )
    .action(async (opts: TelemetryOptions) => {
      if (opts.json && opts.prometheus) {
        process.stderr.write("telemetry: choose one of --json and --prometheus\n");
        process.exitCode = 2;
        return;
      }
      const src = await createGpuInfoSource({
        nvmlLibrary: opts.nvmlLibrary,
        log: silentLogger(),
        preferNvidiaSmi: opts.nvidiaSmi ?? false,
        pcieThroughput: opts.pcieThroughput ?? false,
      });
      // Counters every frame; NVML's events only while watching (one frame has nothing to wait for).
      const monitor = new GpuHealthMonitor({
        source: src,
        log: silentLogger(),
        intervalMs: null,
        drained: opts.drained ?? [],
        ...(opts.watch === undefined ? { watchEvents: null } : {}),
      });
      try {
        const inference = opts.inference && !opts.prometheus ? await inferenceOnce(src) : null;
        if (opts.watch !== undefined) await monitor.start();
        const ok =
          opts.watch === undefined
            ? await once(src, opts, inference, monitor)
            : await watch(src, opts, opts.watch === true ? 2 : opts.watch, inference, monitor);
        process.exitCode = ok ? 0 : 1;
      } finally {
        await monitor.stop();
        await src.close();
      }
    });
}
