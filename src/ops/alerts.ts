// Alerts reach a person: a JSON POST with a Slack-compatible `text` field to --alert-webhook.
// Deduplicated (one alert per key per quiet period), rate-limited (a burst never floods a
// channel), never a secret in the body (scrubbed like a log line), and never in mining's way:
// fire-and-forget with a timeout, one request at a time from a bounded queue; what overflows is
// dropped and counted in the log.
import type { Logger } from "../log.js";
import { redactUrlCredentials } from "../redact.js";
import { scrubSecrets } from "../secrets.js";

export interface AlertOptions {
  url: string;
  log: Logger;
  /** Where this host is, for the text ("host-gpu2 on miner-7"). */
  host: string;
  timeoutMs?: number;
  /** The same key again within this is dropped (default 30 min). */
  dedupeMs?: number;
  /** At most this many alerts per minute, all keys together (default 6). */
  perMinute?: number;
  maxQueue?: number;
  now?: () => number;
}

export interface Alert {
  /** Deduplication key, e.g. "drained:host-gpu2". */
  key: string;
  text: string;
}

export class AlertSink {
  private readonly lastSent = new Map<string, number>();
  private readonly sentAt: number[] = [];
  private readonly queue: Alert[] = [];
  private sending: Promise<void> | null = null;
  private dropped = 0;
  private readonly now: () => number;

  constructor(private readonly o: AlertOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Queue an alert (never waits, never throws); false when deduplicated, rate-limited or full. */
  send(alert: Alert): boolean {
    const now = this.now();
    const last = this.lastSent.get(alert.key);
    if (last !== undefined && now - last < (this.o.dedupeMs ?? 30 * 60_000)) return false;
    while (this.sentAt.length > 0 && now - this.sentAt[0]! > 60_000) this.sentAt.shift();
    if (this.sentAt.length >= (this.o.perMinute ?? 6) || this.queue.length >= (this.o.maxQueue ?? 20)) {
      this.dropped++;
      if (this.dropped === 1 || this.dropped % 100 === 0)
        this.o.log.warn(
          { event: "alert_dropped", key: alert.key, dropped: this.dropped },
          "alert dropped (rate limit or queue full)",
        );
      return false;
    }
    this.lastSent.set(alert.key, now);
    this.sentAt.push(now);
    this.queue.push(alert);
    this.sending ??= this.drain();
    return true;
  }

  /** The key's next alert goes out even within the quiet period (a state that flipped back). */
  forget(key: string): void {
    this.lastSent.delete(key);
  }

  /** Waits (at most one timeout per queued alert) for what is queued; for a clean stop. */
  async flush(): Promise<void> {
    await this.sending;
  }

  private async drain(): Promise<void> {
    for (let a = this.queue.shift(); a; a = this.queue.shift()) await this.post(a);
    this.sending = null;
  }

  private async post(a: Alert): Promise<void> {
    const text = redactUrlCredentials(scrubSecrets(`${this.o.host}: ${a.text}`));
    try {
      const res = await fetch(this.o.url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ text, alert: a.key.split(":")[0], host: this.o.host }),
        signal: AbortSignal.timeout(this.o.timeoutMs ?? 5000),
      });
      await res.body?.cancel().catch(() => undefined);
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      this.o.log.info({ event: "alert_sent", key: a.key }, `alert sent: ${text}`);
    } catch (err) {
      this.o.log.warn(
        { event: "alert_failed", key: a.key, err: (err as Error).message },
        `the alert webhook failed (${(err as Error).message}); mining goes on`,
      );
    }
  }
}
