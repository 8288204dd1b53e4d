/**
 * The types of external calls (the contract between the client, client.ts, and the
 * transforms that use it). client.ts re-exports them.
 */
import type { Effect } from "effect"

export interface ExternalRequest {
  readonly method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE"
  readonly url: string
  /** May contain secrets: never recorded, never in error messages. */
  readonly headers: Readonly<Record<string, string>>
  /** A JSON value, sent as application/json. */
  readonly body?: unknown
}

export type ErrorClass =
  | "timeout"
  | "connection_reset"
  | "connection_refused"
  | "rate_limited"
  | "server_error"
  | "client_error"
  | "malformed_response"
  | "truncated_body"
  | "interrupted"
  | "network"

export interface ExternalAttempt {
  /** 1-based */
  readonly attempt: number
  /** When the request was sent (after the permit and the rate-limit token), epoch ms. */
  readonly startedAt: number
  readonly latencyMs: number
  /** HTTP status, null when no response */
  readonly status: number | null
  /** null = success */
  readonly errorClass: ErrorClass | null
  /** one line */
  readonly errorMessage: string | null
  /** raw body as received (null when none) */
  readonly responseText: string | null
  /** parsed JSON, undefined when not JSON */
  readonly responseJson: unknown
  /** from Retry-After when present */
  readonly retryAfterMs: number | null
}

export interface ExternalResult {
  /** every attempt, in order */
  readonly attempts: ReadonlyArray<ExternalAttempt>
  /** the last one; success iff final.errorClass === null */
  readonly final: ExternalAttempt
}

export interface ExternalClientOptions {
  /** Name used for rate limiting (e.g. provider or host). */
  readonly service: string
  /** Per attempt. */
  readonly timeoutMs: number
  readonly retry: { readonly maxAttempts: number; readonly baseDelayMs: number; readonly maxDelayMs: number; readonly jitter: boolean }
  readonly rateLimit?: { readonly requestsPerSecond?: number; readonly requestsPerMinute?: number }
  /** Max concurrent in-flight calls (the AIMD ceiling). */
  readonly poolSize: number
  /** AIMD: halve permits on 429, +1 on success, floor 1, ceiling poolSize. */
  readonly adaptive: boolean
  /** Statuses that count as errors even if 2xx/3xx (http transform). */
  readonly errorStatuses?: ReadonlyArray<number>
  /** Default DEFAULT_RETRYABLE (retry.ts). */
  readonly retryableClasses?: ReadonlyArray<ErrorClass>
}

/** Optional hooks of one call. */
export interface CallHooks {
  /** Runs after each attempt, before any retry delay (e.g. to record attempts as they end). */
  readonly onAttempt?: (attempt: ExternalAttempt) => Effect.Effect<void>
}

export interface ExternalClient {
  /**
   * One logical call: waits for a pool permit and a rate-limit token per attempt,
   * retries with exponential backoff + jitter (Schedule), honouring Retry-After. Never
   * fails: errors are in the attempts. On fiber interruption the in-flight request is
   * aborted (AbortController) and the effect is interrupted (callers record `interrupted`).
   */
  readonly call: (request: ExternalRequest, hooks?: CallHooks) => Effect.Effect<ExternalResult>
  /** Current permits (for tests/metrics). */
  readonly currentPermits: Effect.Effect<number>
}
