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

/** `https://host:8080/v1/x?q=1` → `/v1/x?q=1` (what a call records of its URL). */
export const pathOf = (url: string): string => {
  try {
    const u = new URL(url)
    return `${u.pathname}${u.search}`
  } catch {
    return url
  }
}
