#!/usr/bin/env node
// A loopback server speaking the part of the Ollama API the adapter uses (GET /api/tags,
// non-streaming POST /api/generate), backed by node-llama-cpp with one GGUF model. Run as its
// own process, as Ollama would be, by bench/http-hop.mjs:
//   node bench/ollama-standin.mjs --model PATH --name NAME [--threads N]
//   node bench/ollama-standin.mjs --instant --name NAME    (answers at once, no model: the hop alone)
// Prints "listening http://127.0.0.1:PORT" once it serves.
import { statSync } from "node:fs";
import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { getLlama, LlamaCompletion } from "node-llama-cpp";

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    name: { type: "string" },
    threads: { type: "string", default: "2" },
    instant: { type: "boolean", default: false },
  },
});
const threads = Number(values.threads);
const instant = values.instant;
const llama = instant ? null : await getLlama({ gpu: false, build: "never", maxThreads: threads });
const model = instant ? null : await llama.loadModel({ modelPath: values.model });
const context = instant
  ? null
  : await model.createContext({
      sequences: 1,
      contextSize: Math.min(model.trainContextSize || 4096, 4096),
      threads,
    });
const seq = context?.getSequence();
const size = instant ? 1 : statSync(values.model).size;
// One sequence: requests are served one at a time, as Ollama does with OLLAMA_NUM_PARALLEL=1.
let queue = Promise.resolve();

async function generate(body) {
  const t0 = process.hrtime.bigint();
  if (instant) {
    return {
      model: body.model,
      created_at: new Date().toISOString(),
      response: "ok",
      done: true,
      done_reason: "length",
      prompt_eval_count: 1,
      eval_count: 1,
      total_duration: Number(process.hrtime.bigint() - t0),
    };
  }
  await seq.clearHistory();
  const completion = new LlamaCompletion({ contextSequence: seq });
  let evalCount = 0;
  const r = await completion.generateCompletionWithMeta(body.prompt ?? "", {
    maxTokens: body.options?.num_predict ?? 128,
    temperature: body.options?.temperature ?? 0.8,
    disableContextShift: true,
    onToken: (t) => {
      evalCount += t.length;
    },
  });
  return {
    model: body.model,
    created_at: new Date().toISOString(),
    response: r.response,
    done: true,
    done_reason: r.metadata.stopReason === "maxTokens" ? "length" : "stop",
    prompt_eval_count: model.tokenize(body.prompt ?? "").length,
    eval_count: evalCount,
    total_duration: Number(process.hrtime.bigint() - t0),
  };
}

const server = createServer((req, res) => {
  const send = (status, obj) => {
    const text = JSON.stringify(obj);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
  };
  if (req.method === "GET" && req.url === "/api/tags") {
    send(200, { models: [{ name: `${values.name}:latest`, model: `${values.name}:latest`, size }] });
    return;
  }
  if (req.method === "POST" && req.url === "/api/generate") {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      const name = String(body.model ?? "").replace(/:latest$/, "");
      if (name !== values.name) {
        send(404, { error: `model '${body.model}' not found` });
        return;
      }
      queue = queue.then(
        () => generate(body).then((r) => send(200, r)),
        () => undefined,
      );
      queue.catch((err) => send(500, { error: String(err) }));
    });
    return;
  }
  send(404, { error: "not found" });
});
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`listening http://127.0.0.1:${server.address().port}\n`);
});
process.on("SIGTERM", () => {
  server.close();
  process.exit(0);
});
