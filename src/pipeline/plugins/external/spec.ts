/**
 * What an external-call transform (`llm`, `http`) gives the engine: how to build the
 * request for a row and how to read the reply into a result. The engine makes the call
 * (live, replayed or verified), records every attempt in `calls` with the bodies in the
 * payload store, and applies the result like any row transform's.
 */
import type { Row, TransformResult } from "../protocol.js"
import type { ErrorClass, ExternalAttempt, ExternalRequest } from "./client.js"

/** The part of a request that is recorded and hashed: never the headers (they carry keys). */
export interface RecordedRequest {
  readonly method: ExternalRequest["method"]
  readonly url: string
  readonly body: unknown
}

export type PreparedCall =
  | { readonly _tag: "Call"; readonly request: ExternalRequest; readonly recorded: RecordedRequest }
  /** The row cannot be asked about (a missing field, a template error): an error result, no call. */
  | { readonly _tag: "Error"; readonly reason: Row }

/** How a reply was read. */
export interface Interpretation {
  readonly result: TransformResult
  /** The model the reply says answered (`model` of an OpenAI-style reply). */
  readonly responseModel?: string | null
  /** Token usage the reply reported. */
  readonly usage?: unknown
}

export interface ExternalCallSpec {
  readonly kind: "llm" | "http"
  /** `openai`, `openrouter`, `azure`, `http`: recorded with each call. */
  readonly provider: string
  readonly model: string | null
  /** Rate-limit bucket name (`rate_limit.services.<name>`). */
  readonly service: string
  readonly timeoutMs: number
  /** `pool_size` of the plugin; undefined: `concurrency.max_workers`, else 1. */
  readonly poolSize: number | undefined
  /** AIMD throttle on 429s. */
  readonly adaptive: boolean
  /** Statuses that count as errors even when 2xx/3xx (http). */
  readonly errorStatuses?: ReadonlyArray<number>
  readonly retryableClasses?: ReadonlyArray<ErrorClass>
  readonly prepare: (row: Row) => PreparedCall
  /** Reads the last attempt of a call (an error attempt included) into a result. */
  readonly interpret: (row: Row, final: ExternalAttempt) => Interpretation
}

/** A one-line reason of a failed call, for `on_error` and `transform_errors`. */
export const callFailure = (final: ExternalAttempt): Row => ({
  reason: "call_failed",
  error_class: final.errorClass,
  status: final.status,
  message: final.errorMessage,
  attempts: final.attempt
})
