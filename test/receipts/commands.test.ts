// The keys / verify / receipts commands, run through commander in-process (the same register()
// the CLI calls), with stdout/stderr captured and the exit code read from process.exitCode.
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { register as registerKeys } from "../../src/commands/keys.js";
import { register as registerReceipts } from "../../src/commands/receipts.js";
import { register as registerVerify } from "../../src/commands/verify.js";
import { stateFiles } from "../../src/paths.js";
import {
  buildMinerReceipt,
  generateKeyPair,
  loadKeyFile,
  parseJsonLossless,
  ReceiptLog,
  signPayload,
} from "../../src/receipts/index.js";
import { runCommand } from "../support/command-run.js";
import { loadVectors } from "../support/receipts.js";

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "receipts-cli-"));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  delete process.env["AITBC_STATE_DIR"];
});

function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return runCommand([registerKeys, registerVerify, registerReceipts], args);
}

describe("keys", () => {
  it("generate writes a key, refuses to overwrite without --force, show prints only the public part", async () => {
    const dir = tempDir();
    const gen = await run(["keys", "generate", "--state-dir", dir, "--json"]);
    expect(gen.code).toBe(0);
    const info = JSON.parse(gen.out) as { public_key_hex: string; key_id: string; path: string };
    const key = loadKeyFile(stateFiles.key(dir));
    expect(info).toEqual({
      alg: "Ed25519",
      public_key_hex: key.publicKeyHex,
      key_id: key.keyId,
      path: stateFiles.key(dir),
    });

    const again = await run(["keys", "generate", "--state-dir", dir]);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/already exists; pass --force/);
    expect(loadKeyFile(stateFiles.key(dir)).keyId).toBe(key.keyId);

    const show = await run(["keys", "show", "--state-dir", dir]);
    expect(show.code).toBe(0);
    expect(show.out).toContain(key.publicKeyHex);
    expect(show.out).toContain(key.keyId);
    const secret = Buffer.from(key.secretKey).toString("hex");
    expect(show.out + show.err + gen.out).not.toContain(secret);

    const forced = await run(["keys", "generate", "--state-dir", dir, "--force"]);
    expect(forced.code).toBe(0);
    expect(loadKeyFile(stateFiles.key(dir)).keyId).not.toBe(key.keyId);
  });

  it("show takes the state dir from AITBC_STATE_DIR and refuses a readable key file", async () => {
    const dir = tempDir();
    process.env["AITBC_STATE_DIR"] = dir;
    expect((await run(["keys", "show"])).err).toMatch(/no key file at/);
    expect((await run(["keys", "generate"])).code).toBe(0);
    chmodSync(stateFiles.key(dir), 0o644);
    const show = await run(["keys", "show", "--json"]);
    expect(show.code).toBe(1);
    expect(show.err).toContain(`chmod 600 ${stateFiles.key(dir)}`);
    expect(show.out).toBe("");
  });

  it("documents itself in --help", async () => {
    const help = await run(["keys", "generate", "--help"]);
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/--state-dir <DIR>/);
    expect(help.out).toMatch(/--force/);
  });
});

describe("verify", () => {
  const miner = generateKeyPair();
  const receipt = buildMinerReceipt(
    {
      jobId: "job-7",
      minerId: "m-1",
      model: "tiny",
      prompt: "p",
      output: "o",
      units: 5,
      startedAt: 1,
      completedAt: 2,
      durationMs: 900,
    },
    miner,
  );

  function file(text: string): string {
    const path = join(tempDir(), "receipt.json");
    writeFileSync(path, text);
    return path;
  }

  it("exits 0 with a one-line summary for a valid receipt, with or without the expected key", async () => {
    const path = file(JSON.stringify(receipt, null, 2));
    for (const extra of [[], ["--public-key", miner.publicKeyHex], ["--key-id", miner.keyId]]) {
      const r = await run(["verify", path, ...extra]);
      expect(r.code, extra.join(" ")).toBe(0);
      expect(r.out).toMatch(/^valid .*job job-7, model tiny, 5 tokens/);
      expect(r.out.trim().split("\n")).toHaveLength(1);
    }
  });

  it("exits 1 with the reason: tampered, wrong key, malformed, unsupported alg, unparsable", async () => {
    const cases: [string, string[], RegExp][] = [
      [JSON.stringify({ ...receipt, units: 6 }), [], /signature mismatch/],
      [JSON.stringify(receipt), ["--public-key", generateKeyPair().publicKeyHex], /wrong key/],
      [
        JSON.stringify({ ...receipt, signature: { ...receipt.signature, sig: "AAAA" } }),
        [],
        /malformed signature/,
      ],
      [
        JSON.stringify({ ...receipt, signature: { ...receipt.signature, alg: "ES256" } }),
        [],
        /unsupported signature algorithm "ES256"/,
      ],
      ['{"job_id": "x", "signature": ', [], /not valid JSON/],
      [JSON.stringify({ job_id: "x" }), [], /no signature/],
    ];
    for (const [text, extra, reason] of cases) {
      const r = await run(["verify", file(text), ...extra]);
      expect(r.code, text).toBe(1);
      expect(r.err).toMatch(reason);
      expect(r.out).toBe("");
    }
    const missing = await run(["verify", join(tempDir(), "nope.json")]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/cannot read/);
  });

  it("verifies every reference vector from its raw file text, and a coordinator answer wrapper", async () => {
    for (const v of loadVectors()) {
      const text = `${v.payload_json.slice(0, -1)}, "signature": ${JSON.stringify(v.signature)}}`;
      const r = await run(["verify", file(text), "--public-key", v.public_key_hex, "--json"]);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.out)).toMatchObject({ valid: true, keyId: v.signature.key_id });
    }
    const coordinator = generateKeyPair();
    const payload = '{"job_id":"job-7","units":5.0,"miner_receipt_id":null}';
    const signed = `${payload.slice(0, -1)},"signature":${JSON.stringify(signPayload(parseJsonLossless(payload), coordinator))}}`;
    const r = await run([
      "verify",
      file(`{"status":"ok","receipt":${signed}}`),
      "--key-id",
      coordinator.keyId,
    ]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^valid .*job job-7, 5.0 units/);
  });
});

describe("receipts", () => {
  it("summarises the log: counts by kind and verification, units per model", async () => {
    const dir = tempDir();
    const key = generateKeyPair();
    const log = new ReceiptLog(stateFiles.receiptsLog(dir));
    for (const [i, model] of ["tiny", "tiny", "big"].entries()) {
      const receipt = buildMinerReceipt(
        {
          jobId: `j${i}`,
          minerId: "m",
          model,
          prompt: "p",
          output: "o",
          units: 10 + i,
          startedAt: 1,
          completedAt: 1,
          durationMs: 1,
        },
        key,
      );
      await log.append({
        kind: "miner",
        jobId: `j${i}`,
        receipt,
        verified: true,
        at: "2026-01-01T00:00:00.000Z",
      });
    }
    await log.append({
      kind: "coordinator",
      jobId: "j0",
      receipt: { model: "tiny", units: 10 },
      verified: false,
      reason: "signature mismatch",
      at: 5,
    });
    await log.append({
      kind: "coordinator",
      jobId: "j1",
      receipt: { model: "tiny", units: 11 },
      verified: null,
      at: 6,
    });

    const text = await run(["receipts", "--state-dir", dir]);
    expect(text.code).toBe(0);
    expect(text.out).toContain("5 receipts (miner 3, coordinator 2): 3 verified, 1 failed, 1 unverified");
    expect(text.out).toMatch(/tiny {2}21 \/ 21/);
    expect(text.out).toMatch(/big {2}12 \/ 0/);
    expect(text.out).toContain("FAILED (signature mismatch)");

    const json = await run(["receipts", "--state-dir", dir, "--json", "--limit", "2"]);
    const s = JSON.parse(json.out) as Record<string, unknown> & { entries: unknown[] };
    expect(s).toMatchObject({
      count: 5,
      byKind: { miner: 3, coordinator: 2 },
      verified: 3,
      failed: 1,
      unverified: 1,
      unitsByModel: { tiny: { miner: 21, coordinator: 21 }, big: { miner: 12, coordinator: 0 } },
    });
    expect(s.entries).toHaveLength(2);

    expect((await run(["receipts", "--state-dir", dir, "--limit", "x"])).code).toBe(2);
    const empty = await run(["receipts", "--state-dir", tempDir()]);
    expect(empty.out).toContain("no receipts yet");
    expect(readFileSync(stateFiles.receiptsLog(dir), "utf8").split("\n")).toHaveLength(6);
  });
});
