/**
 * The client's manners, measured by the fake server: the rate limit (per client and
 * shared per service), the pool bound, the AIMD throttle, and interruption aborting
 * the request in flight.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import type { FakeLlmServer } from "../../src/dev/fake-llm.js"
import { makeExternalClient } from "../../src/pipeline/plugins/external/client.js"
import { makeRateLimiterRegistry } from "../../src/pipeline/plugins/external/rate-limit.js"
import { clientOptions, echo, eventually, fakeServer } from "./support.js"

/** The most requests the server saw arrive within any window of `windowMs`. */
const maxInWindow = (s: FakeLlmServer, windowMs: number): number => {
  const at = s.stats().log.map((r) => r.arrivedAt).sort((a, b) => a - b)
  let best = 0
  let lo = 0
  for (let hi = 0; hi < at.length; hi++) {
    while (at[hi]! - at[lo]! >= windowMs) lo++
    best = Math.max(best, hi - lo + 1)
  }
  return best
}

const noRetry = { maxAttempts: 1, baseDelayMs: 1, maxDelayMs: 1, jitter: false }

describe("rate limit", () => {
  // 20 per second is one request every 50 ms: at most ⌈1000 × 20 / 1000⌉ + 1 = 21 start
  // in any second. The server stamps arrivals on the same event loop, so a stall can
  // bunch a few of them: two more are allowed. Without the limit all 30 arrive at once.
  it.live("holds requests per second as the server measures them, with concurrent callers", () =>
    Effect.gen(function*() {
      const s = yield* fakeServer()
      const client = yield* makeExternalClient(clientOptions({ poolSize: 16, rateLimit: { requestsPerSecond: 20 } }))
      yield* Effect.forEach(Array.from({ length: 30 }, (_, i) => i), (i) => client.call(echo(s, { i })), { concurrency: "unbounded" })
      assert.strictEqual(s.stats().requests, 30)
      assert.isAtMost(maxInWindow(s, 1000), 23)
      const log = s.stats().log
      const span = log[log.length - 1]!.arrivedAt - log[0]!.arrivedAt
      assert.isAtMost((log.length - 1) / (span / 1000), 20 * 1.15)
    }).pipe(Effect.scoped))

  it.live("is one budget for every client of the same service in a registry", () =>
    Effect.gen(function*() {
      const s = yield* fakeServer()
      const registry = yield* makeRateLimiterRegistry
      const rateLimit = { requestsPerMinute: 1200 } // 20/s
      const a = yield* makeExternalClient(clientOptions({ poolSize: 8, rateLimit }), registry)
      const b = yield* makeExternalClient(clientOptions({ poolSize: 8, rateLimit }), registry)
      const calls = Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? a : b).call(echo(s, { i })))
      yield* Effect.all(calls, { concurrency: "unbounded" })
      assert.strictEqual(s.stats().requests, 30)
      assert.isAtMost(maxInWindow(s, 1000), 23)
    }).pipe(Effect.scoped))
})

describe("pool and AIMD throttle", () => {
  it.live("never has more than poolSize requests in flight", () =>
    Effect.gen(function*() {
      const s = yield* fakeServer({ latencyMs: 20 })
      const client = yield* makeExternalClient(clientOptions({ poolSize: 3 }))
      yield* Effect.forEach(Array.from({ length: 12 }, (_, i) => i), (i) => client.call(echo(s, { i })), { concurrency: "unbounded" })
      assert.isAtMost(s.stats().maxInFlight, 3)
      assert.isAtLeast(s.stats().maxInFlight, 2)
      assert.strictEqual(yield* client.currentPermits, 3)
    }).pipe(Effect.scoped))

  it.live("halves the permits on each 429 down to 1, then climbs back one per success to the pool size", () =>
    Effect.gen(function*() {
      const s = yield* fakeServer({ retryAfterSeconds: 0 })
      const client = yield* makeExternalClient(clientOptions({ poolSize: 8, adaptive: true, retry: noRetry }))
      const permits: Array<number> = []
      s.failNext("rate_limit", "rate_limit", "rate_limit", "rate_limit")
      for (let i = 0; i < 12; i++) {
        yield* client.call(echo(s, { i }))
        permits.push(yield* client.currentPermits)
      }
      assert.deepStrictEqual(permits, [4, 2, 1, 1, 2, 3, 4, 5, 6, 7, 8, 8])
    }).pipe(Effect.scoped))

  it.live("halves once for a burst of 429s answering one full pool, and the smaller pool bounds the retries", () =>
    Effect.gen(function*() {
      const s = yield* fakeServer({ retryAfterSeconds: 0, latencyMs: 30 })
      const client = yield* makeExternalClient(clientOptions({ poolSize: 8, adaptive: true, retry: noRetry }))
      s.failNext(...Array.from({ length: 8 }, () => "rate_limit" as const))
      const first = yield* Effect.forEach(Array.from({ length: 8 }, (_, i) => i), (i) => client.call(echo(s, { i })), {
        concurrency: "unbounded"
      })
      assert.deepStrictEqual(first.map((r) => r.final.errorClass), Array(8).fill("rate_limited"))
      assert.strictEqual(yield* client.currentPermits, 4)
      s.resetStats()
      s.failNext(...Array.from({ length: 4 }, () => "rate_limit" as const))
      // Four 429s (one per permit, sent together) halve again once: 2 permits, while 8 calls wait.
      yield* Effect.forEach(Array.from({ length: 8 }, (_, i) => i), (i) => client.call(echo(s, { j: i })), { concurrency: "unbounded" })
      assert.isAtMost(s.stats().maxInFlight, 4)
      // 2 after the halving, then one more for each of the four successes.
      assert.strictEqual(yield* client.currentPermits, 6)
    }).pipe(Effect.scoped))

  it.live("leaves the pool alone when not adaptive", () =>
    Effect.gen(function*() {
      const s = yield* fakeServer({ retryAfterSeconds: 0 })
      const client = yield* makeExternalClient(clientOptions({ poolSize: 8, adaptive: false, retry: noRetry }))
      s.failNext("rate_limit", "rate_limit")
      yield* client.call(echo(s))
      yield* client.call(echo(s))
      assert.strictEqual(yield* client.currentPermits, 8)
    }).pipe(Effect.scoped))
})

describe("interruption", () => {
  it.live(
    "aborts the request in flight: the server sees the connection closed, the fiber ends interrupted",
    () =>
      Effect.gen(function*() {
        const s = yield* fakeServer()
        // The client would wait 60 s for this hung request; the test's 10 s timeout
        // fails the test unless interruption ends it first.
        const client = yield* makeExternalClient(clientOptions({ timeoutMs: 60_000 }))
        s.failNext("timeout")
        const fiber = yield* Effect.fork(client.call(echo(s)))
        yield* eventually(() => s.stats().inFlight === 1)
        const exit = yield* Fiber.interrupt(fiber)
        assert.isTrue(Exit.isInterrupted(exit))
        yield* eventually(() => s.stats().closedByClient === 1)
        assert.strictEqual(s.stats().inFlight, 0)
        assert.isNull(s.stats().log[0]!.respondedAt)
        // The client still works after an interruption.
        const r = yield* client.call(echo(s))
        assert.isNull(r.final.errorClass)
      }).pipe(Effect.scoped),
    10_000
  )

  it.live(
    "aborts every request of a full pool, and the calls waiting for a permit never start",
    () =>
      Effect.gen(function*() {
        const s = yield* fakeServer()
        const client = yield* makeExternalClient(clientOptions({ timeoutMs: 60_000, poolSize: 4 }))
        s.failNext("timeout", "timeout", "timeout", "timeout")
        const fiber = yield* Effect.fork(
          Effect.forEach(Array.from({ length: 10 }, (_, i) => i), (i) => client.call(echo(s, { i })), { concurrency: "unbounded" })
        )
        yield* eventually(() => s.stats().inFlight === 4)
        assert.isTrue(Exit.isInterrupted(yield* Fiber.interrupt(fiber)))
        yield* eventually(() => s.stats().closedByClient === 4)
        assert.strictEqual(s.stats().requests, 4)
      }).pipe(Effect.scoped),
    10_000
  )

  it.live(
    "ends a call waiting between attempts without another request",
    () =>
      Effect.gen(function*() {
        const s = yield* fakeServer({ retryAfterSeconds: 60 })
        const client = yield* makeExternalClient(clientOptions())
        s.failNext("rate_limit")
        const fiber = yield* Effect.fork(client.call(echo(s)))
        yield* eventually(() => s.stats().log[0]?.respondedAt != null)
        const exit = yield* Fiber.interrupt(fiber)
        assert.isTrue(Exit.isInterrupted(exit))
        assert.strictEqual(s.stats().requests, 1)
      }).pipe(Effect.scoped),
    10_000
  )
})
