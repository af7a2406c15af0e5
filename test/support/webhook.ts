// A webhook receiver on loopback for the alert tests: every POST body it got, parsed as JSON.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

export interface Webhook {
  url: string;
  bodies: Record<string, unknown>[];
  /** Requests answered so far (a slow webhook answers late). */
  answered(): number;
  close(): Promise<void>;
}

/** `delayMs`: how long each answer takes (a slow webhook); `status`: what it answers. */
export async function startWebhook(o: { delayMs?: number; status?: number } = {}): Promise<Webhook> {
  const bodies: Record<string, unknown>[] = [];
  let answered = 0;
  const server = createServer((req, res) => {
    let text = "";
    req.on("data", (d: Buffer) => {
      text += d.toString();
    });
    req.on("end", () => {
      bodies.push(JSON.parse(text) as Record<string, unknown>);
      setTimeout(() => {
        answered++;
        res.writeHead(o.status ?? 200).end("ok");
      }, o.delayMs ?? 0);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    bodies,
    answered: () => answered,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
