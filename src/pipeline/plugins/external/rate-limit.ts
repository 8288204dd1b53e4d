/**
 * Rate limits of external calls, one limiter per service name, shared by every client
 * of a run that names the same service (ELSPETH's `rate_limit.services.<name>`).
 *
 * Requests are spaced evenly: a limit of 120 per minute lets one request start every
 * 500 ms, with no initial burst, so in any window of T ms at most ⌈T × rate⌉ + 1
 * requests start. Per second and per minute limits combine (both hold). Every attempt
 * takes a token, retries included: the limit is what the server sees.
 */
import { Duration, Effect, RateLimiter, Scope } from "effect"

export interface RateLimitSpec {
  readonly requestsPerSecond?: number
  readonly requestsPerMinute?: number
}

/** Wraps an effect so that it starts only when the service's limit allows. */
export type ServiceLimiter = <A, E, R>(task: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

export interface RateLimiterRegistry {
  /**
   * The limiter of `service`. The first call for a service fixes its limits; later
   * calls with other limits get the same limiter (one service, one budget).
   */
  readonly limiterFor: (service: string, spec: RateLimitSpec | undefined) => Effect.Effect<ServiceLimiter>
}

const unlimited: ServiceLimiter = (task) => task

/** One token every `ms` milliseconds, no burst. */
const spaced = (ms: number) => RateLimiter.make({ limit: 1, interval: Duration.millis(Math.max(1, Math.ceil(ms))), algorithm: "token-bucket" })

const limiterOf = (spec: RateLimitSpec | undefined): Effect.Effect<ServiceLimiter, never, Scope.Scope> =>
  Effect.gen(function*() {
    const limiters: Array<RateLimiter.RateLimiter> = []
    if (spec?.requestsPerSecond !== undefined && spec.requestsPerSecond > 0) limiters.push(yield* spaced(1000 / spec.requestsPerSecond))
    if (spec?.requestsPerMinute !== undefined && spec.requestsPerMinute > 0) limiters.push(yield* spaced(60_000 / spec.requestsPerMinute))
    if (limiters.length === 0) return unlimited
    return <A, E, R>(task: Effect.Effect<A, E, R>) => limiters.reduceRight<Effect.Effect<A, E, R>>((t, l) => l(t), task)
  })

/** A registry whose limiters live as long as the current scope (one run). */
export const makeRateLimiterRegistry: Effect.Effect<RateLimiterRegistry, never, Scope.Scope> = Effect.gen(function*() {
  const scope = yield* Effect.scope
  const lock = yield* Effect.makeSemaphore(1)
  const byService = new Map<string, ServiceLimiter>()
  return {
    limiterFor: (service, spec) =>
      lock.withPermits(1)(
        Effect.suspend(() => {
          const known = byService.get(service)
          if (known !== undefined) return Effect.succeed(known)
          return limiterOf(spec).pipe(
            Scope.extend(scope),
            Effect.tap((l) => Effect.sync(() => byService.set(service, l)))
          )
        })
      )
  }
})
