/**
 * Helpers of the external-call transforms (`llm`, `http`); what they give the engine,
 * `ExternalCallSpec`, is in protocol.ts.
 */
import type { Row } from "../protocol.js"
import type { ExternalAttempt } from "./client.js"

export type { ExternalCallSpec, Interpretation, PreparedCall, RecordedRequest } from "../protocol.js"

/** A one-line reason of a failed call, for `on_error` and `transform_errors`. */
export const callFailure = (final: ExternalAttempt): Row => ({
  reason: "call_failed",
  error_class: final.errorClass,
  status: final.status,
  message: final.errorMessage,
  attempts: final.attempt
})
