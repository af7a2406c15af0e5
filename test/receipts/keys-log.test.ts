import nodeFs, { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { stateFiles } from "../../src/paths.js";
import {
  buildMinerReceipt,
  generateKeyFile,
  generateKeyPair,
  KeyFileError,
  loadKeyFile,
  loadOrCreateKey,
  parseJsonLossless,
  ReceiptLog,
  signPayload,
  summarizeReceipts,
  verifyCoordinatorReceipt,
  verifyReceipt,
} from "../../src/receipts/index.js";

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "receipts-"));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function captureLog() {
  const lines: string[] = [];
  const log = pino({ level: "info" }, { write: (l: string) => lines.push(l) });
  return { log, lines };
}

describe("key file", () => {
  it("is written 0600 in a 0700 directory and loads back to the same key", () => {
    const dir = join(tempDir(), "state");
    const path = stateFiles.key(dir);
    const key = generateKeyFile(path);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const loaded = loadKeyFile(path);
    expect(loaded.publicKeyHex).toBe(key.publicKeyHex);
    expect(loaded.keyId).toBe(Buffer.from(key.publicKeyHex, "hex").toString("base64url"));
    const r = buildMinerReceipt(
      {
        jobId: "j",
        minerId: "m",
        model: "x",
        prompt: "p",
        output: "o",
        units: 1,
        startedAt: 1,
        completedAt: 1,
        durationMs: 1,
      },
      loaded,
    );
    expect(verifyReceipt(r, { publicKey: key.publicKeyHex }).valid).toBe(true);
  });

  it("is never replaced without force, and replaced with it", () => {
    const path = stateFiles.key(tempDir());
    const first = generateKeyFile(path);
    expect(() => generateKeyFile(path)).toThrow(/already exists; pass --force/);
    expect(loadKeyFile(path).keyId).toBe(first.keyId);
    const second = generateKeyFile(path, { force: true });
    expect(second.keyId).not.toBe(first.keyId);
    expect(loadKeyFile(path).keyId).toBe(second.keyId);
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it.skipIf(process.platform === "win32")(
    "is refused when group or others can read it, naming the file and the fix",
    () => {
      const path = stateFiles.key(tempDir());
      generateKeyFile(path);
      for (const mode of [0o644, 0o640, 0o604, 0o660]) {
        chmodSync(path, mode);
        let err: unknown;
        try {
          loadKeyFile(path);
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(KeyFileError);
        expect((err as KeyFileError).code).toBe("permissions");
        expect((err as Error).message).toContain(path);
        expect((err as Error).message).toContain(`chmod 600 ${path}`);
      }
      chmodSync(path, 0o400);
      expect(() => loadKeyFile(path)).not.toThrow();
    },
  );

  it("refuses missing, corrupt and mismatched files without echoing the private key", () => {
    const dir = tempDir();
    const path = stateFiles.key(dir);
    expect(() => loadKeyFile(path)).toThrow(/no key file at .*keys generate/);
    writeFileSync(path, "{not json", { mode: 0o600 });
    expect(() => loadKeyFile(path)).toThrow(/not a valid key file/);
    generateKeyFile(path, { force: true });
    const doc = JSON.parse(readFileSync(path, "utf8")) as Record<string, string>;
    doc["public_key_hex"] = generateKeyPair().publicKeyHex;
    writeFileSync(path, JSON.stringify(doc), { mode: 0o600 });
    expect(() => loadKeyFile(path)).toThrow(/corrupt/);
    doc["private_key_hex"] = "zz";
    writeFileSync(path, JSON.stringify(doc), { mode: 0o600 });
    try {
      loadKeyFile(path);
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).not.toContain(doc["public_key_hex"]);
    }
  });

  it("loadOrCreateKey generates on first start, then loads, and logs only the public part", async () => {
    const dir = tempDir();
    const { log, lines } = captureLog();
    const a = await loadOrCreateKey(dir, log);
    expect(a.created).toBe(true);
    const b = await loadOrCreateKey(dir, log);
    expect(b.created).toBe(false);
    expect(b.key.keyId).toBe(a.key.keyId);
    const secretHex = Buffer.from(a.key.secretKey).toString("hex");
    expect(lines.join("")).toContain(a.key.keyId);
    expect(lines.join("")).toContain(a.key.publicKeyHex);
    expect(lines.join("")).not.toContain(secretHex);
    expect(readFileSync(stateFiles.key(dir), "utf8")).toContain(secretHex);
  });

  it("loadOrCreateKey refuses an unsafe key file rather than replacing it", async () => {
    const dir = tempDir();
    generateKeyFile(stateFiles.key(dir));
    chmodSync(stateFiles.key(dir), 0o644);
    await expect(loadOrCreateKey(dir, captureLog().log)).rejects.toThrow(/chmod 600/);
  });
});

describe("receipts log", () => {
  it("appends lines that arrive together in batches, each once and whole, also past one batch's size", async () => {
    const dir = tempDir();
    const path = stateFiles.receiptsLog(dir);
    const log = new ReceiptLog(path);
    // 24 entries of ~40 KB at once: more than one 384 KiB batch.
    await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        log.append({
          kind: "miner",
          jobId: `big-${i}`,
          receipt: { job_id: `big-${i}`, filler: "x".repeat(40_000) },
          verified: null,
          at: i,
        }),
      ),
    );
    const lines = readFileSync(path, "utf8").trimEnd().split("\n");
    expect(lines).toHaveLength(24);
    expect(lines.map((l) => (JSON.parse(l) as { jobId: string }).jobId).sort()).toEqual(
      Array.from({ length: 24 }, (_, i) => `big-${i}`).sort(),
    );
    // A failed write rejects only its own lines; later appends still land.
    const bad = new ReceiptLog(join(dir, "not-a-dir", "x.jsonl"));
    writeFileSync(join(dir, "not-a-dir"), "a file where the directory should be");
    await expect(
      bad.append({ kind: "miner", jobId: "lost", receipt: {}, verified: null, at: 0 }),
    ).rejects.toThrow();
    rmSync(join(dir, "not-a-dir"));
    await bad.append({ kind: "miner", jobId: "kept", receipt: {}, verified: null, at: 0 });
    expect(readFileSync(join(dir, "not-a-dir", "x.jsonl"), "utf8")).toContain('"kept"');
  });

  it("appends one line per entry, concurrently, and keeps coordinator receipts verifiable", async () => {
    const dir = tempDir();
    const log = new ReceiptLog(stateFiles.receiptsLog(dir));
    const miner = generateKeyPair();
    const coordinator = generateKeyPair();
    const entries = Array.from({ length: 40 }, (_, i) => i);
    await Promise.all(
      entries.map(async (i) => {
        const receipt = buildMinerReceipt(
          {
            jobId: `job-${i}`,
            minerId: "m",
            model: i % 2 ? "tiny" : "big",
            prompt: "p",
            output: "o".repeat(i),
            units: i,
            startedAt: 10,
            completedAt: 11,
            durationMs: 5,
          },
          miner,
        );
        await log.append({
          kind: "miner",
          jobId: `job-${i}`,
          receipt,
          verified: true,
          at: new Date().toISOString(),
        });
      }),
    );
    const payloadText = '{"job_id":"job-1","model":"tiny","units":3.0,"seq":12345678901234567890}';
    const text = `${payloadText.slice(0, -1)},"signature":${JSON.stringify(signPayload(parseJsonLossless(payloadText), coordinator))}}`;
    const check = verifyCoordinatorReceipt(text, coordinator.publicKeyHex);
    await log.append({ kind: "coordinator", jobId: "job-1", ...check, at: Date.now() });
    const bad = verifyCoordinatorReceipt(text, miner.publicKeyHex);
    await log.append({ kind: "coordinator", jobId: "job-2", ...bad, at: Date.now() });
    await log.append({
      kind: "coordinator",
      jobId: "job-3",
      ...verifyCoordinatorReceipt(text, undefined),
      at: 1,
    });

    const path = stateFiles.receiptsLog(dir);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const raw = readFileSync(path, "utf8").trimEnd().split("\n");
    expect(raw).toHaveLength(43);
    for (const line of raw) expect(() => parseJsonLossless(line)).not.toThrow();

    const read = await log.read();
    expect(read.entries).toHaveLength(43);
    const logged = read.entries.find((e) => e.jobId === "job-1" && e.kind === "coordinator")!;
    // the logged receipt still verifies: 3.0 and the big integer survived the round trip
    expect(verifyReceipt(logged.receipt, { publicKey: coordinator.publicKeyHex }).valid).toBe(true);
    expect(read.entries.every((e) => e.kind !== "miner" || verifyReceipt(e.receipt).valid)).toBe(true);

    const s = summarizeReceipts(read);
    expect(s).toMatchObject({
      count: 43,
      byKind: { miner: 40, coordinator: 3 },
      verified: 41,
      failed: 1,
      unverified: 1,
    });
    const odd = entries.filter((i) => i % 2).reduce((a, b) => a + b, 0);
    const even = entries.filter((i) => i % 2 === 0).reduce((a, b) => a + b, 0);
    expect(s.unitsByModel["tiny"]).toEqual({ miner: odd, coordinator: 9 });
    expect(s.unitsByModel["big"]).toEqual({ miner: even, coordinator: 0 });
  });

  it("reads a missing log as empty and skips a torn last line", async () => {
    const dir = tempDir();
    const log = new ReceiptLog(stateFiles.receiptsLog(dir));
    expect(await log.read()).toEqual({ entries: [], skipped: 0 });
    await log.append({
      kind: "miner",
      jobId: "a",
      receipt: { model: "__proto__", units: 2 },
      verified: null,
      at: "t",
    });
    writeFileSync(stateFiles.receiptsLog(dir), '{"kind":"miner","jobId":"b","verif', { flag: "a" });
    const read = await log.read();
    expect(read.entries.map((e) => e.jobId)).toEqual(["a"]);
    expect(read.skipped).toBe(1);
    expect(Object.entries(summarizeReceipts(read).unitsByModel)).toEqual([
      ["__proto__", { miner: 2, coordinator: 0 }],
    ]);
  });

  it("a write cut short by a failure costs only its own line: the next starts on a line of its own", async () => {
    const dir = tempDir();
    const path = stateFiles.receiptsLog(dir);
    const log = new ReceiptLog(path);
    const entry = (jobId: string) => ({
      kind: "miner" as const,
      jobId,
      receipt: {},
      verified: null,
      at: "t",
    });
    await log.append(entry("a"));
    const write = nodeFs.writeSync;
    // The disk fills part way through the next line: part of it lands, then ENOSPC.
    const spy = vi.spyOn(nodeFs, "writeSync").mockImplementationOnce(((fd: number, data: Buffer) => {
      write(fd, data.subarray(0, 10));
      throw Object.assign(new Error("ENOSPC: injected"), { code: "ENOSPC" });
    }) as never);
    await expect(log.append(entry("b"))).rejects.toThrow("ENOSPC");
    spy.mockRestore();
    await log.append(entry("c"));
    await log.close();
    const read = await log.read();
    expect(read.entries.map((e) => e.jobId)).toEqual(["a", "c"]);
    expect(read.skipped).toBe(1);
  });
});
