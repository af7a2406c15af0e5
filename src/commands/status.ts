// `status`: why a running host gets (or gets no) jobs: per worker, the last minutes' polls, empty
// polls, 429s, hand-outs, refusals, results, failures and coordinator errors, with one verdict
// line each (src/ops/status.ts), read from the host's GET /status. --json prints it as served.
import type { Command } from "commander";
import { z } from "zod";
import { addOpsTarget, OpsClientError, type OpsTarget, opsBase, opsRequest } from "./ops-client.js";

const counts = z.record(z.string(), z.number());
const statusSchema = z.object({
  windowMinutes: z.number(),
  verdict: z.string(),
  workers: z.array(
    z.object({
      minerId: z.string(),
      gpus: z.string(),
      polls: z.number(),
      emptyPolls: z.number(),
      rateLimited: z.number(),
      coordinatorErrors: z.number(),
      handouts: z.number(),
      refused: counts,
      failures: counts,
      completed: z.number(),
      results: counts,
      verdict: z.string(),
    }),
  ),
});
export type HostStatus = z.infer<typeof statusSchema>;

const byCode = (r: Record<string, number>) =>
  Object.entries(r)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ") || "0";

export function formatStatus(s: HostStatus): string {
  const lines = [`last ${s.windowMinutes} min: ${s.verdict}`, ""];
  for (const w of s.workers) {
    lines.push(`${w.minerId} (GPU ${w.gpus}): ${w.verdict}`);
    lines.push(
      `  polls ${w.polls} (empty ${w.emptyPolls}, 429 ${w.rateLimited}, errors ${w.coordinatorErrors}), hand-outs ${w.handouts}, completed ${w.completed}`,
    );
    lines.push(
      `  refused: ${byCode(w.refused)}; failed: ${byCode(w.failures)}; results: ${byCode(w.results)}`,
    );
  }
  return `${lines.join("\n")}\n`;
}

export function register(program: Command): void {
  addOpsTarget(
    program
      .command("status")
      .description("why a running multi-GPU host gets (or gets no) jobs: the last minutes per worker")
      .option("--json", "print the host's GET /status answer as JSON"),
  ).action(async (opts: OpsTarget & { json?: boolean }) => {
    try {
      const { status, body } = await opsRequest(`${opsBase(opts)}/status`, "GET");
      if (status !== 200) throw new OpsClientError(`status: the miner answered HTTP ${status}`);
      const parsed = statusSchema.safeParse(body);
      if (!parsed.success)
        throw new OpsClientError("status: the miner's /status answer has an unexpected shape");
      process.stdout.write(
        opts.json ? `${JSON.stringify(parsed.data, null, 2)}\n` : formatStatus(parsed.data),
      );
    } catch (err) {
      if (!(err instanceof OpsClientError)) throw err;
      process.stderr.write(`${err.message}\n`);
      process.exitCode = 1;
    }
  });
}
