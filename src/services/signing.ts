/**
 * Signing of exports.
 *
 * Each record gets `signature = HMAC-SHA256(key, canonicalJson(record without signature))`
 * (lower-case hex). The signatures are chained in export order:
 *
 *   chain_0 = SHA-256("")                       (hex)
 *   chain_i = SHA-256(chain_{i-1} + signature_i) (hex of the UTF-8 of both hex strings)
 *
 * and a final `manifest` record carries the count, the last link of the chain, the
 * algorithms and its own signature, computed the same way. A verifier with the key
 * re-computes all of it; see `landscape/verify.ts`.
 *
 * It lives beside the ports because it is a contract between two layers: the export
 * (pipeline) writes signed records and the verifier (landscape) checks them.
 */
import { createHmac } from "node:crypto"
import { Clock, Data, Effect, Stream } from "effect"
import { CANONICAL_VERSION, canonicalJsonUnsafe, sha256Hex } from "../core/canonical.js"
import { ExportError, type ExportRecord } from "./export-store.js"

export const SIGNING_KEY_ENV = "RUNLEDGER_SIGNING_KEY"
export const SIGNING_KEY_FALLBACK_ENV = "ELSPETH_SIGNING_KEY"
export const HASH_ALGORITHM = "sha256" as const
export const SIGNATURE_ALGORITHM = "hmac-sha256" as const
/** The first link of the chain: the SHA-256 of the empty string. */
export const CHAIN_SEED = sha256Hex("")

/** No signing key in the environment although signing was asked for. */
export class SigningKeyMissing extends Data.TaggedError("SigningKeyMissing")<{
  /** What asked for signing: `landscape.export.sign`, `--sign`, `verify`. */
  readonly requestedBy: string
  readonly message: string
}> {}

/** The key from `RUNLEDGER_SIGNING_KEY`, else `ELSPETH_SIGNING_KEY`; an empty value counts as unset. */
export const signingKeyFromEnv = (env: Readonly<Record<string, string | undefined>>): string | undefined => {
  for (const name of [SIGNING_KEY_ENV, SIGNING_KEY_FALLBACK_ENV]) {
    const v = env[name]
    if (v !== undefined && v !== "") return v
  }
  return undefined
}

export const missingKey = (requestedBy: string): SigningKeyMissing =>
  new SigningKeyMissing({
    requestedBy,
    message: `${requestedBy} needs a signing key: set ${SIGNING_KEY_ENV} (or ${SIGNING_KEY_FALLBACK_ENV})`
  })

/** The key for `requestedBy`, or a SigningKeyMissing naming both variables. */
export const requireSigningKey = (
  requestedBy: string,
  env: Readonly<Record<string, string | undefined>> = process.env
): Effect.Effect<string, SigningKeyMissing> => {
  const key = signingKeyFromEnv(env)
  return key === undefined ? Effect.fail(missingKey(requestedBy)) : Effect.succeed(key)
}

/** HMAC-SHA256 (hex) of the canonical JSON of `payload` (which must not hold `signature`). Throws CanonicalError. */
export const signPayload = (key: string, payload: unknown): string =>
  createHmac("sha256", key).update(canonicalJsonUnsafe(payload)).digest("hex")

export const chainNext = (previous: string, signature: string): string => sha256Hex(previous + signature)

export interface Manifest {
  readonly record_type: "manifest"
  readonly run_id: string
  readonly record_count: number
  readonly chain_hash: string
  readonly hash_algorithm: typeof HASH_ALGORITHM
  readonly signature_algorithm: typeof SIGNATURE_ALGORITHM
  readonly canonical_version: string
  readonly exported_at: string
  readonly signature: string
}

/** The record without its `signature` key (the signed payload). */
export const unsigned = (record: Readonly<Record<string, unknown>>): Record<string, unknown> => {
  const { signature: _signature, ...rest } = record
  return rest
}

/** Signs records one by one and keeps the chain; `manifest` closes the export. */
export class Signer {
  private chain = CHAIN_SEED
  private count = 0
  constructor(private readonly key: string, private readonly runId: string) {}

  /** Adds `signature` to `record` (in place, as its last key) and advances the chain. */
  sign(record: Record<string, unknown>): void {
    const signature = signPayload(this.key, record)
    record.signature = signature
    this.chain = chainNext(this.chain, signature)
    this.count++
  }

  manifest(exportedAt: string): Manifest {
    const body = {
      record_type: "manifest" as const,
      run_id: this.runId,
      record_count: this.count,
      chain_hash: this.chain,
      hash_algorithm: HASH_ALGORITHM,
      signature_algorithm: SIGNATURE_ALGORITHM,
      canonical_version: CANONICAL_VERSION,
      exported_at: exportedAt
    }
    return { ...body, signature: signPayload(this.key, body) }
  }
}

/**
 * Signs every record of `records` and appends the manifest, with `exported_at` read
 * from effect's Clock when the last record has been signed.
 */
export const signRecords = <E, R>(
  records: Stream.Stream<ExportRecord, E, R>,
  key: string,
  runId: string
): Stream.Stream<ExportRecord | Manifest, E | ExportError, R> =>
  Stream.suspend(() => {
    const signer = new Signer(key, runId)
    const signed = Stream.mapChunksEffect(records, (chunk) =>
      Effect.try({
        try: () => {
          for (const record of chunk) signer.sign(record as Record<string, unknown>)
          return chunk
        },
        catch: (e) => new ExportError({ reason: "CorruptTrail", message: `cannot sign a record: ${String((e as Error).message ?? e)}`, cause: e })
      }))
    const manifest = Stream.fromEffect(
      Effect.map(Clock.currentTimeMillis, (ms) => signer.manifest(new Date(ms).toISOString()))
    )
    return Stream.concat(signed as Stream.Stream<ExportRecord | Manifest, E | ExportError, R>, manifest)
  })
