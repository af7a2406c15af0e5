// Receipts: canonical JSON as Python prints it, Ed25519 signing and verification, the key file
// and the receipts log.
export {
  generateKeyPair,
  KeyFormatError,
  keyFromSeed,
  parsePublicKey,
  type ReceiptSignature,
  SIGNATURE_ALG,
  type SigningKey,
  type SigningKey as MinerKey,
  sha256Hex,
  signPayload,
} from "./crypto.js";
export {
  canonicalJson,
  JsonError,
  JsonFloat,
  type JsonLimits,
  type JsonObject,
  JsonParseError,
  type JsonValue,
  parseJsonLossless,
  pyFloatRepr,
  stringifyJson,
} from "./json.js";
export { type GenerateOptions, generateKeyFile, KeyFileError, loadKeyFile, loadOrCreateKey } from "./keys.js";
export {
  type ReadResult,
  type ReceiptKind,
  ReceiptLog,
  type ReceiptLogEntry,
  type ReceiptSummary,
  summarizeReceipts,
} from "./log.js";
export {
  buildMinerReceipt,
  type MinerReceipt,
  type MinerReceiptInput,
  ReceiptInputError,
} from "./receipt.js";
export {
  type CoordinatorReceiptCheck,
  POST_SIGNING_FIELDS,
  signedPayload,
  type TextVerifyResult,
  type VerifyFailure,
  type VerifyOptions,
  type VerifyResult,
  validityText,
  verifyCoordinatorReceipt,
  verifyReceipt,
  verifyReceiptText,
} from "./verify.js";
