// One HTTP exchange read straight off undici's dispatcher: a handler collects the answer's bytes
// (under the size cap), one timer holds the deadline, and one promise settles with the answer or
// the transport fault. `request()` builds a Readable stream, an AbortController and an async
// iterator per call for the same job; on a loop of small JSON calls, a cost the miner pays twice
// per job (docs/benchmarks.md#what-each-bench-measures).
import type { Agent, Dispatcher } from "undici";

/** An answer as it came: status, headers, and the body bytes read (all, or the kept head). */
export interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** The body went over the cap: `body` holds only its first `headBytes` (or nothing). */
  overflow: boolean;
  /** Content-Length declared, when the server sent one. */
  declared: number | null;
}

export interface ExchangeOptions {
  origin: string;
  path: string;
  method: "GET" | "POST" | "DELETE";
  headers: Record<string, string>;
  body: string | undefined;
  /** One deadline for the headers, then a fresh one for the whole body. */
  timeoutMs: number;
  maxBodyBytes: number;
  /** Over the cap, read on until this many bytes are kept (0: stop at once). */
  headBytes: number;
  /** Aborts while the answer's headers have not arrived; an answer arriving is read to the end. */
  signal: AbortSignal | undefined;
}

/** Why an exchange failed below HTTP: the caller maps it to its own error kinds. */
export class ExchangeFault extends Error {
  constructor(
    readonly why: "aborted" | "deadline" | "transport",
    readonly phase: "headers" | "body",
    cause: unknown,
  ) {
    super(why, { cause });
  }
}

class AnswerCollector implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | null = null;
  /** An abort asked for before undici handed over its controller. */
  private abortAsked: Error | null = null;
  private phase: "headers" | "body" = "headers";
  private why: "aborted" | "deadline" | null = null;
  private status = 0;
  private headers: Record<string, string | string[] | undefined> = {};
  private declared: number | null = null;
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private overflow = false;
  private settled = false;
  private timer: ReturnType<typeof setTimeout>;
  private readonly onCallerAbort = () => this.abort("aborted");

  constructor(
    private readonly o: ExchangeOptions,
    private readonly resolve: (a: RawAnswer) => void,
    private readonly reject: (e: ExchangeFault) => void,
  ) {
    this.timer = setTimeout(() => this.abort("deadline"), o.timeoutMs);
    o.signal?.addEventListener("abort", this.onCallerAbort, { once: true });
  }

  private abort(why: "aborted" | "deadline"): void {
    if (this.settled || this.why !== null) return;
    this.why = why;
    const err = new Error(why === "deadline" ? "deadline" : "aborted by caller");
    if (this.controller) this.controller.abort(err);
    else this.abortAsked = err;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.abortAsked) controller.abort(this.abortAsked);
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
  ): void {
    if (statusCode < 200) return; // 1xx: the answer is still to come
    this.status = statusCode;
    this.headers = headers;
    // The answer is ours from here: the caller's abort no longer cuts it, and the body gets a
    // deadline of its own (undici's bodyTimeout is per chunk, which a server dribbling one byte
    // at a time never trips).
    this.o.signal?.removeEventListener("abort", this.onCallerAbort);
    this.phase = "body";
    this.timer.refresh();
    const raw = headers["content-length"];
    const declared = Number(Array.isArray(raw) ? raw[0] : raw);
    if (raw !== undefined && Number.isFinite(declared)) this.declared = declared;
    if (this.declared !== null && this.declared > this.o.maxBodyBytes) {
      this.overflow = true;
      if (this.o.headBytes === 0) this.finishEarly(controller);
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.settled) return;
    this.chunks.push(chunk);
    this.size += chunk.length;
    if (this.size > this.o.maxBodyBytes) this.overflow = true;
    // Past the cap, read on only as far as the kept head needs, then drop the rest unread.
    if (this.overflow && this.size >= this.o.headBytes) this.finishEarly(controller);
  }

  onResponseEnd(): void {
    this.finish();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (this.settled) return;
    this.settle();
    this.reject(new ExchangeFault(this.why ?? "transport", this.phase, err));
  }

  /** An oversized answer: keep what was read, stop reading (the connection is dropped). */
  private finishEarly(controller: Dispatcher.DispatchController): void {
    this.finish();
    controller.abort(new Error("answer over the size cap"));
  }

  private finish(): void {
    if (this.settled) return;
    this.settle();
    const all = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
    this.resolve({
      status: this.status,
      headers: this.headers,
      body: this.overflow ? all.subarray(0, this.o.headBytes) : all,
      overflow: this.overflow,
      declared: this.declared,
    });
  }

  private settle(): void {
    this.settled = true;
    clearTimeout(this.timer);
    this.o.signal?.removeEventListener("abort", this.onCallerAbort);
  }
}

/** Send one request and read its answer; rejects only with an ExchangeFault. */
export function exchange(agent: Agent, o: ExchangeOptions): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const handler = new AnswerCollector(o, resolve, reject);
    agent.dispatch(
      {
        origin: o.origin,
        path: o.path,
        method: o.method,
        headers: o.headers,
        body: o.body ?? null,
        headersTimeout: o.timeoutMs,
        bodyTimeout: o.timeoutMs,
      },
      handler,
    );
  });
}
