/**
 * The pool of in-flight calls, with an optional adaptive (AIMD) size: a 429 halves the
 * permits (floor 1), a success adds one back (ceiling `poolSize`).
 *
 * One decrease per round trip, as TCP does: a 429 to an attempt that started before
 * the last decrease does not halve again (it answers the old, larger pool), so a burst
 * of 429s from one full pool halves once rather than dropping to 1.
 */
import { Clock, Effect } from "effect"

export interface Throttle {
  /** Runs `task` holding one permit. */
  readonly withPermit: <A, E, R>(task: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** A 429 answered an attempt that started at `startedAt` (epoch ms). */
  readonly onRateLimited: (startedAt: number) => Effect.Effect<void>
  readonly onSuccess: Effect.Effect<void>
  readonly currentPermits: Effect.Effect<number>
}

export const makeThrottle = (poolSize: number, adaptive: boolean): Effect.Effect<Throttle> =>
  Effect.gen(function*() {
    const ceiling = Math.max(1, Math.floor(poolSize))
    const semaphore = yield* Effect.makeSemaphore(ceiling)
    let permits = ceiling
    let lastDecreaseAt = -Infinity
    const resize = (n: number) =>
      Effect.suspend(() => {
        if (n === permits) return Effect.void
        permits = n
        return semaphore.resize(n)
      })
    return {
      withPermit: semaphore.withPermits(1),
      onRateLimited: (startedAt) =>
        adaptive
          ? Effect.flatMap(Clock.currentTimeMillis, (now) => {
            if (startedAt < lastDecreaseAt) return Effect.void
            lastDecreaseAt = now
            return resize(Math.max(1, Math.floor(permits / 2)))
          })
          : Effect.void,
      onSuccess: adaptive ? Effect.suspend(() => resize(Math.min(ceiling, permits + 1))) : Effect.void,
      currentPermits: Effect.sync(() => permits)
    }
  })
