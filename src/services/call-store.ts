/**
 * The port external calls (`llm`, `http`) use beyond the Recorder: the content-addressed
 * store their bodies go to, and the recorded calls of an earlier run that
 * `run_mode: replay`/`verify` answer from or compare with. `landscape/` implements it
 * (`CallStoreSql`, part of `SqliteLandscape`).
 */
import { Context } from "effect"
import type { Effect } from "effect"

/** ELSPETH's default folder of the payload store, used when `payload_store` gives no `base_path`. */
export const DEFAULT_PAYLOAD_BASE_PATH = ".elspeth/payloads"

export type BlobProblem = {
  readonly reason: "InvalidHash" | "Integrity" | "NotFound" | "Io"
  readonly message: string
}

/** Blobs named by the SHA-256 of their content, checked on read. */
export interface BlobStore {
  readonly basePath: string
  /** Stores `content` under `hash`; keeps (after checking) a blob already there. */
  readonly put: (hash: string, content: string) => BlobProblem | undefined
  readonly get: (hash: string) => string | BlobProblem
  /** `put` without blocking the event loop. */
  readonly putAsync: (hash: string, content: string) => Promise<BlobProblem | undefined>
}

/** One recorded attempt of a run's call, with the node state it belongs to. */
export interface RecordedCallRow {
  readonly call_id: string
  readonly state_id: string
  readonly request_hash: string | null
  readonly response_hash: string | null
  readonly attempt: number
  readonly http_status: number | null
  readonly error_class: string | null
  readonly error_json: string | null
  readonly response_model: string | null
  readonly state_status: string
  readonly state_output_hash: string | null
  readonly state_error_json: string | null
}

export interface CallStoreService {
  /** The blob store in `basePath` (relative to the working directory). */
  readonly blobs: (basePath: string) => BlobStore
  /** Every call attempt of `runId`, by node state then attempt; fails with a message naming the run. */
  readonly recordedCalls: (runId: string) => Effect.Effect<ReadonlyArray<RecordedCallRow>, string>
}

export class CallStore extends Context.Tag("runledger/CallStore")<CallStore, CallStoreService>() {}
