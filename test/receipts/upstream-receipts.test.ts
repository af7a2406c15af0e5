// Receipts as the upstream AITBC coordinator really makes them: it signs the payload, then adds
// zk_status/tee_status (and with ZK/TEE required zk_proof, tee_attestation_id, tee_quote). Such a
// receipt is valid with those fields named as unsigned; any other change stays invalid. The model
// is in metadata.job_payload.model.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  generateKeyPair,
  parseJsonLossless,
  signPayload,
  stringifyJson,
  verifyCoordinatorReceipt,
  verifyReceiptText,
} from "../../src/receipts/index.js";
import { summarizeReceipts } from "../../src/receipts/log.js";
import { runCli } from "../support/cli.js";

const key = generateKeyPair();

/** The shape upstream's ReceiptService.create_receipt signs, then what miner.py adds after. */
function upstreamReceipt(extra: Record<string, unknown> = {}): string {
  const payload = {
    version: "1.0",
    receipt_id: "8f0c1e2d3b4a59687766554433221100",
    job_id: "job-42",
    provider: "gpu-box-1",
    client: "client-1",
    status: "COMPLETED",
    units: 1.5,
    unit_type: "gpu_seconds",
    unit_price: 0.02,
    price: 0.03,
    completed_at: 1_764_300_000,
    started_at: 1_764_299_998,
    metadata: {
      job_payload: { type: "inference", model: "llama3:8b", prompt: "hi" },
      job_constraints: {},
      result: { output: "hello" },
      metrics: { duration_ms: 1500 },
    },
  };
  return stringifyJson({ ...payload, signature: signPayload(payload, key), ...extra });
}

describe("upstream coordinator receipts", () => {
  it("valid, with the post-signing fields named as unsigned", () => {
    const text = upstreamReceipt({ zk_status: "not_required", tee_status: "not_required" });
    const r = verifyReceiptText(text, { publicKey: key.publicKeyHex });
    expect(r).toMatchObject({ valid: true, unsignedFields: ["zk_status", "tee_status"] });
    const check = verifyCoordinatorReceipt(text, key.publicKeyHex);
    expect(check).toMatchObject({ verified: true, reason: "valid, unsigned fields: zk_status, tee_status" });
  });

  it("ZK and TEE required: every field upstream adds after signing", () => {
    const text = upstreamReceipt({
      zk_status: "verified",
      zk_proof: { a: [1, 2] },
      tee_status: "verified",
      tee_attestation_id: "att-1",
      tee_quote: "cXVvdGU",
    });
    expect(verifyReceiptText(text, { publicKey: key.publicKeyHex }).unsignedFields).toEqual([
      "zk_status",
      "zk_proof",
      "tee_status",
      "tee_attestation_id",
      "tee_quote",
    ]);
  });

  it("a signed field changed is still invalid, post-signing fields or not", () => {
    const text = upstreamReceipt({ zk_status: "not_required", tee_status: "not_required" }).replace(
      '"units":1.5',
      '"units":15.0',
    );
    expect(verifyReceiptText(text, { publicKey: key.publicKeyHex })).toMatchObject({
      valid: false,
      code: "signature_mismatch",
    });
  });

  it("an unknown extra field is invalid: only upstream's known post-signing fields are set aside", () => {
    const text = upstreamReceipt({ zk_status: "not_required", bonus: 100 });
    expect(verifyReceiptText(text, { publicKey: key.publicKeyHex })).toMatchObject({ valid: false });
  });

  it("a plain valid receipt has no unsigned fields", () => {
    const r = verifyReceiptText(upstreamReceipt(), { publicKey: key.publicKeyHex });
    expect(r.valid).toBe(true);
    expect(r.unsignedFields).toBeUndefined();
  });

  it("the verify command says so too, and exits 0", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "upstream-receipt-")), "r.json");
    writeFileSync(file, upstreamReceipt({ zk_status: "not_required", tee_status: "not_required" }));
    const r = await runCli(["verify", file, "--public-key", key.publicKeyHex]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^valid, unsigned fields: zk_status, tee_status; Ed25519 .*job job-42, model llama3:8b, 1\.5 gpu_seconds/,
    );
  });

  it("the receipts summary attributes units to metadata.job_payload.model", () => {
    const receipt = parseJsonLossless(upstreamReceipt({ zk_status: "not_required" }));
    const s = summarizeReceipts({
      entries: [
        { at: "2026-11-28T00:00:00Z", kind: "coordinator", jobId: "job-42", receipt, verified: true },
      ],
      skipped: 0,
    } as never);
    expect(Object.keys(s.unitsByModel)).toEqual(["llama3:8b"]);
    expect(s.unitsByModel["llama3:8b"]).toMatchObject({ coordinator: 1.5 });
  });
});
