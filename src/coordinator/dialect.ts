// What every coordinator dialect shares: requests with the dialect's auth headers, the 2xx check,
// the health probe (GET /health, else /v1/health), and its name and traits from its table row.
import type { Logger } from "../log.js";
import type { HttpClient, HttpRequest, HttpResponse } from "./http.js";
import type { DialectTraits } from "./types.js";

export type Exchange = { req: HttpRequest; res: HttpResponse };

/** A dialect's row in the dialect table, as its client sees it. */
export interface DialectInfo {
  readonly name: string;
  readonly traits: DialectTraits;
}

/** What the factory hands every dialect's client (each reads what its wire uses). */
export interface DialectOptions {
  http: HttpClient;
  /** The client's own row in the dialect table: its name and traits. */
  dialect: DialectInfo;
  minerId: string;
  apiKey?: string | undefined;
  bearerToken?: string | undefined;
  region?: string | undefined;
  /** Price per unit sent with each result, by a dialect whose traits say `priced`. */
  unitPrice?: number | undefined;
  log: Logger;
}

export abstract class DialectClient {
  readonly protocol: string;
  readonly traits: DialectTraits;

  constructor(
    protected readonly http: HttpClient,
    dialect: DialectInfo,
  ) {
    this.protocol = dialect.name;
    this.traits = dialect.traits;
  }

  /** Headers every request of this dialect carries (auth, miner id). */
  protected abstract headers(): Record<string, string>;

  /** Every secret this client may send, for scrubbing error messages. */
  abstract secrets(): string[];

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
