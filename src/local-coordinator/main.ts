#!/usr/bin/env node
// Standalone local coordinator, run as a child process so tests can SIGKILL and restart it.
// Options come from argv, falling back to AITBC_LOCAL_* variables. Prints one JSON line
// {"url","port","pid"} on stdout once listening; logs go to stderr. /_admin/* is on (enqueue
// with POST /_admin/jobs {payload, constraints?, jobId?}; GET /_admin/jobs|stats|miners).
import { parseArgs } from "node:util";
import { createLogger } from "../log.js";
import { faultOptionsSchema } from "./faults.js";
import { type FaultOptions, type RateLimits, startLocalCoordinator } from "./index.js";

function fail(msg: string): never {
  process.stderr.write(`local coordinator: ${msg}\n`);
  process.exit(2);
}

function jsonOption<T>(name: string, text: string | undefined): T | undefined {
  if (text === undefined || text === "") return undefined;
  try {
    const v: unknown = JSON.parse(text);
    if (typeof v !== "object" || v === null || Array.isArray(v)) fail(`${name} must be a JSON object`);
    return v as T;
  } catch {
    return fail(`${name} is not valid JSON`);
  }
}

function faultOptions(v: unknown): FaultOptions | undefined {
  if (v === undefined) return undefined;
  const r = faultOptionsSchema.safeParse(v);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  return fail(`--faults: ${issue ? `${issue.path.join(".") || "value"}: ${issue.message}` : "invalid"}`);
}

function intOption(name: string, text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined || text === "") return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) fail(`${name} must be an integer in ${min}..${max}`);
  return n;
}

async function main(): Promise<void> {
  const env = process.env;
  const { values } = parseArgs({
    options: {
      host: { type: "string" },
      port: { type: "string" },
      "state-file": { type: "string" },
      "api-key": { type: "string", multiple: true },
      faults: { type: "string" },
      "rate-limits": { type: "string" },
      "lease-ms": { type: "string" },
      "requeue-on-fail": { type: "boolean" },
      "upstream-quirks": { type: "boolean" },
      "long-poll-max": { type: "string" },
      "claim-requires-key": { type: "boolean" },
      "max-body-bytes": { type: "string" },
      "log-level": { type: "string" },
    },
    strict: true,
  });
  const apiKeys =
    values["api-key"] ?? (env["AITBC_LOCAL_API_KEY"] ? env["AITBC_LOCAL_API_KEY"].split(",") : []);
  const level = values["log-level"] ?? env["AITBC_LOCAL_LOG_LEVEL"] ?? "warn";
  if (!["fatal", "error", "warn", "info", "debug", "trace", "silent"].includes(level))
    fail("bad --log-level");
  const log = createLogger({ level: level as "warn" });
  const coordinator = await startLocalCoordinator({
    host: values.host ?? env["AITBC_LOCAL_HOST"] ?? "127.0.0.1",
    port: intOption("--port", values.port ?? env["AITBC_LOCAL_PORT"], 0, 65535) ?? 0,
    stateFile: values["state-file"] ?? env["AITBC_LOCAL_STATE_FILE"] ?? undefined,
    apiKeys: apiKeys.filter((k) => k !== ""),
    faults: faultOptions(jsonOption<unknown>("--faults", values.faults ?? env["AITBC_LOCAL_FAULTS"])),
    rateLimits: jsonOption<Partial<RateLimits>>(
      "--rate-limits",
      values["rate-limits"] ?? env["AITBC_LOCAL_RATE_LIMITS"],
    ),
    leaseTimeoutMs: intOption(
      "--lease-ms",
      values["lease-ms"] ?? env["AITBC_LOCAL_LEASE_MS"],
      0,
      2 ** 31 - 1,
    ),
    requeueOnFail: values["requeue-on-fail"] ?? env["AITBC_LOCAL_REQUEUE_ON_FAIL"] === "1",
    claimRequiresKey: values["claim-requires-key"] ?? false,
    upstreamQuirks: values["upstream-quirks"] ?? env["AITBC_LOCAL_UPSTREAM_QUIRKS"] === "1",
    longPollMaxSeconds: intOption(
      "--long-poll-max",
      values["long-poll-max"] ?? env["AITBC_LOCAL_LONG_POLL_MAX"],
      0,
      300,
    ),
    maxBodyBytes: intOption("--max-body-bytes", values["max-body-bytes"], 1024, 1 << 30),
    admin: true,
    log,
  });
  process.stdout.write(
    `${JSON.stringify({ url: coordinator.url, port: coordinator.port, pid: process.pid })}\n`,
  );
  const stop = () => {
    void coordinator.close().then(() => process.exit(0));
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

main().catch((err: unknown) => fail(err instanceof Error ? err.message : String(err)));
