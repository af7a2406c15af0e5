// What both coordinator dialects share: requests with the dialect's auth headers, the 2xx check,
// and the health probe (GET /health, else /v1/health).
import type { HttpClient, HttpRequest, HttpResponse } from "./http.js";

export type Exchange = { req: HttpRequest; res: HttpResponse };

export abstract class DialectClient {
  constructor(protected readonly http: HttpClient) {}

  /** Headers every request of this dialect carries (auth, miner id). */
  protected abstract headers(): Record<string, string>;

  protected async call(req: Omit<HttpRequest, "headers">): Promise<Exchange> {
    const full: HttpRequest = { ...req, headers: this.headers() };
    return { req: full, res: await this.http.send(full) };
  }

  protected async expectOk(req: Omit<HttpRequest, "headers">): Promise<Exchange> {
    const r = await this.call(req);
    if (r.res.status < 200 || r.res.status >= 300) throw this.http.statusError(r.req, r.res);
    return r;
  }

  async health(): Promise<void> {
    const first = await this.call({ method: "GET", path: "/health" });
    if (first.res.status >= 200 && first.res.status < 300) return;
    if (first.res.status !== 404) throw this.http.statusError(first.req, first.res);
    await this.expectOk({ method: "GET", path: "/v1/health" });
  }
}
