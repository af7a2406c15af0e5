// A plain port of the seed's Python miner loop (docs "Building a Custom Miner", claim dialect):
// register, then poll → claim → process → submit, sleeping 2 s when there is no job and 5 s
// after an error. One job at a time, no journal, no outbox, no receipt, no retry: the baseline
// the miner is measured against. Plain .mjs rather than .ts: Node 20 cannot run TypeScript and
// tsconfig.build.json compiles src/ only.
import { request } from "undici";

export function createSeedLoop({ url, minerId, backend, idleSleepMs = 2000, errorSleepMs = 5000 }) {
  let stopping = false;
  let wake = () => {};
  const sleep = (ms) =>
    new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  const post = (path, body) =>
    request(`${url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });

  async function register() {
    const res = await post("/v1/miners/register", {
      miner_id: minerId,
      capabilities: backend.listModels().map((m) => m.name),
      gpu_info: { name: "Unknown", memory: "Unknown" },
    });
    await res.body.dump();
    if (res.statusCode !== 200) throw new Error(`register: HTTP ${res.statusCode}`);
  }

  async function pollJobs() {
    const res = await request(`${url}/v1/jobs/available?miner_id=${encodeURIComponent(minerId)}`);
    if (res.statusCode === 200) return res.body.json();
    await res.body.dump();
    return null;
  }

  async function claimJob(jobId) {
    const res = await post(`/v1/jobs/${encodeURIComponent(jobId)}/claim`, { miner_id: minerId });
    await res.body.dump();
    return res.statusCode === 200;
  }

  async function processJob(job) {
    const r = await backend.generate(
      {
        model: job.model ?? "llama3.2",
        prompt: job.prompt ?? "",
        maxTokens: job.max_tokens ?? 256,
        temperature: job.temperature ?? 0.7,
        stop: [],
      },
      new AbortController().signal,
    );
    return r.output;
  }

  async function submitResult(jobId, result) {
    const res = await post(`/v1/jobs/${encodeURIComponent(jobId)}/complete`, {
      miner_id: minerId,
      result,
      completed_at: new Date().toISOString(),
    });
    await res.body.dump();
    if (res.statusCode !== 200) throw new Error(`complete: HTTP ${res.statusCode}`);
  }

  async function run() {
    await register();
    while (!stopping) {
      try {
        const job = await pollJobs();
        if (job) {
          if (await claimJob(job.job_id)) {
            const result = await processJob(job);
            await submitResult(job.job_id, result);
          }
        } else {
          await sleep(idleSleepMs);
        }
      } catch {
        if (!stopping) await sleep(errorSleepMs);
      }
    }
  }

  const done = run();
  return {
    done,
    async stop() {
      stopping = true;
      wake();
      await done;
    },
  };
}
