// `gpu drain ID` / `gpu undrain ID`: the operator's word on one card of a running multi-GPU host,
// sent to its ops endpoint (POST /drain/ID, /undrain/ID; the host accepts them from loopback
// only). ID: the worker's miner id, the GPU's index or its UUID.
import type { Command } from "commander";
import { addOpsTarget, OpsClientError, type OpsTarget, opsBase, opsRequest } from "./ops-client.js";

export function registerDrain(gpu: Command): void {
  for (const action of ["drain", "undrain"] as const) {
    addOpsTarget(
      gpu
        .command(`${action} <ID>`)
        .description(
          action === "drain"
            ? "take one card of a running host out of service: its worker stops taking jobs, deregisters and stops (ID: miner id, GPU index or UUID)"
            : "put a drained card back: forget what its health events taught and start its worker again (it registers anew)",
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
