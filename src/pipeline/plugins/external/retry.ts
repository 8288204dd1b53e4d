/**
 * The retry policy of external calls: which error classes are retried, the backoff
 * schedule (exponential, capped, with jitter) and Retry-After.
 */
import { Duration, Schedule } from "effect"
import type { ErrorClass, ExternalAttempt } from "./types.js"

/**
 * Retried unless the caller says otherwise: failures a later attempt can cure. A
 * malformed or truncated body is most often a proxy or a connection giving out half
 * way; `client_error` (the request itself is wrong), `network` (DNS, unreachable host)
 * and `interrupted` are not retried.
 */
export const DEFAULT_RETRYABLE: ReadonlyArray<ErrorClass> = [
  "timeout",
  "connection_reset",
  "connection_refused",
  "rate_limited",
  "server_error",
  "truncated_body",
  "malformed_response"
]

export interface RetryPolicy {
  /** Attempts in all, the first included (1 = no retry). */
  readonly maxAttempts: number
  /** Delay before the second attempt; doubles for each further one. */
  readonly baseDelayMs: number
  /** Cap of the exponential delay (a longer Retry-After still wins). */
  readonly maxDelayMs: number
  /** Draw each delay uniformly from [delay/2, delay) so that callers spread out. */
  readonly jitter: boolean
}

/**
 * Reads a Retry-After header: delta-seconds (fractions accepted) or an HTTP date.
 * Returns milliseconds to wait from `now` (never negative), null when absent or unreadable.
 */
export const parseRetryAfter = (value: string | null | undefined, now: number): number | null => {
  if (value === null || value === undefined) return null
  const text = value.trim()
  if (text === "") return null
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000)
  // Only an HTTP date (with a weekday or a month name), not any string Date.parse accepts.
  if (!/[a-z]{3}/i.test(text)) return null
  const at = Date.parse(text)
  return Number.isNaN(at) ? null : Math.max(0, at - now)
}

/**
 * The schedule between attempts: its input is the attempt that just failed (with a
 * retryable class); it stops after `maxAttempts` attempts. Delay n (n = 1 before the
 * second attempt) is min(baseDelayMs × 2^(n-1), maxDelayMs), jittered, and at least the
 * attempt's Retry-After.
 */
export const retrySchedule = (policy: RetryPolicy): Schedule.Schedule<unknown, ExternalAttempt> => {
  const max = Duration.millis(Math.max(0, policy.maxDelayMs))
  const exponential = Schedule.exponential(Duration.millis(Math.max(0, policy.baseDelayMs)), 2).pipe(
    Schedule.modifyDelay((_, d) => Duration.min(d, max))
  )
  const backoff = policy.jitter ? Schedule.jitteredWith(exponential, { min: 0.5, max: 1 }) : exponential
  return backoff.pipe(
    Schedule.intersect(Schedule.recurs(Math.max(0, Math.floor(policy.maxAttempts) - 1))),
    Schedule.intersect(Schedule.identity<ExternalAttempt>()),
    Schedule.modifyDelay(([, attempt], d) => {
      const retryAfter = attempt.retryAfterMs
      return retryAfter !== null && retryAfter > Duration.toMillis(d) ? Duration.millis(retryAfter) : d
    })
  )
}
