// `gpu drain ID` / `gpu undrain ID`: the operator's word on one card of a running host (a fleet's
// or a one-GPU miner), sent to its ops endpoint (POST /drain/ID, /undrain/ID; the host accepts
// them from loopback only, and keeps drains across restarts). ID: miner id, GPU index or UUID.
import type { Command } from "commander";
import { addOpsTarget, OpsClientError, type OpsTarget, opsBase, opsRequest } from "./ops-client.js";

export function registerDrain(gpu: Command): void {
  for (const action of ["drain", "undrain"] as const) {
    addOpsTarget(
      gpu
        .command(`${action} <ID>`)
        .description(
          action === "drain"
            ? "take one card of a running host out of service until undrained, across restarts: its miner stops taking jobs and deregisters (ID: miner id, GPU index or UUID)"
            : "put a drained card back: forget what its health events taught and start its miner again (it registers anew)",
        ),
    ).action(async (id: string, opts: OpsTarget) => {
      try {
        const url = `${opsBase(opts)}/${action}/${encodeURIComponent(id)}`;
        const { status, body } = await opsRequest(url, "POST");
        if (status !== 200)
          throw new OpsClientError(`gpu ${action}: ${String(body["error"] ?? `HTTP ${status}`)}`);
        process.stdout.write(`${String(body["message"] ?? "done")}\n`);
      } catch (err) {
        if (!(err instanceof OpsClientError)) throw err;
        process.stderr.write(`${err.message}\n`);
        process.exitCode = 1;
      }
    });
  }
}
