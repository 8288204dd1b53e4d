/**
 * The external client against the fake server over loopback: each fault gets its error
 * class and is retried (or not) per policy, Retry-After is waited for (measured by the
 * server), the schedule's delays, and what never reaches an error message (secrets).
 */
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Duration, Effect, Schedule } from "effect"
import * as net from "node:net"
import { FAKE_FAULTS, type FakeFault } from "../../src/dev/fake-llm.js"
import { type ErrorClass, type ExternalAttempt, makeExternalClient } from "../../src/pipeline/plugins/external/client.js"
import { parseRetryAfter, retrySchedule } from "../../src/pipeline/plugins/external/retry.js"
import { chatRequest, clientOptions, echo, fakeServer } from "./support.js"

const CLASS_OF: Record<FakeFault, ErrorClass> = {
  rate_limit: "rate_limited",
  server_error: "server_error",
  timeout: "timeout",
  malformed_json: "malformed_response",
  connection_reset: "connection_reset",
  truncated_body: "truncated_body"
}

const classes = (attempts: ReadonlyArray<ExternalAttempt>) => attempts.map((a) => a.errorClass)

describe("external client: error classes and retries", () => {
  for (const fault of FAKE_FAULTS) {
    it.live(`${fault} is ${CLASS_OF[fault]}, retried, then the call succeeds`, () =>
      Effect.gen(function*() {
        const s = yield* fakeServer({ retryAfterSeconds: 0 })
        // A hung request ends after the timeout; the others answer within it even on a busy machine.
        const client = yield* makeExternalClient(clientOptions({ timeoutMs: 1000 }))
        s.failNext(fault)
        const r = yield* client.call(chatRequest(s, "I love it"))
        assert.deepStrictEqual(classes(r.attempts), [CLASS_OF[fault], null])
        assert.deepStrictEqual(r.attempts.map((a) => a.attempt), [1, 2])
        assert.strictEqual(r.final, r.attempts[1])
        assert.strictEqual(r.final.status, 200)
        assert.match((r.final.responseJson as any).choices[0].message.content, /positive/)
        assert.strictEqual(r.final.responseText, JSON.stringify(r.final.responseJson))
        const first = r.attempts[0]!
        assert.isNotNull(first.errorMessage)
        assert.notInclude(first.errorMessage!, "\n")
        assert.strictEqual(s.stats().requests, 2)
        assert.deepStrictEqual(s.stats().log.map((x) => x.outcome), [fault, "ok"])
      }).pipe(Effect.scoped))
  }

  it.live("under every fault at once, each attempt is one request and is classified as the server chose", () =>
    Effect.gen(function*() {
      const s = yield* fakeServer({ seed: 11, faultRate: 0.6, retryAfterSeconds: 0 })
      const client = yield* makeExternalClient(
        clientOptions({ timeoutMs: 1000, poolSize: 16, retry: { maxAttempts: 6, baseDelayMs: 1, maxDelayMs: 5, jitter: true } })
      )
      const results = yield* Effect.forEach(Array.from({ length: 80 }, (_, i) => i), (i) => client.call(echo(s, { i })), {
        concurrency: "unbounded"
      })
      const attempts = results.flatMap((r) => r.attempts)
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 50)))
      assert.strictEqual(attempts.length, s.stats().requests)
      const seen: Record<string, number> = {}
      for (const a of attempts) {
        const key = a.errorClass ?? "ok"
        seen[key] = (seen[key] ?? 0) + 1
      }
      const expected: Record<string, number> = {}
      for (const [outcome, n] of Object.entries(s.stats().byOutcome)) {
        const key = outcome === "ok" ? "ok" : CLASS_OF[outcome as FakeFault]
        expected[key] = (expected[key] ?? 0) + n
      }
      assert.deepStrictEqual(seen, expected)
      for (const r of results) {
        assert.strictEqual(r.final, r.attempts[r.attempts.length - 1])
        assert.deepStrictEqual(r.attempts.map((a) => a.attempt), r.attempts.map((_, i) => i + 1))
        // Retried until success or the last attempt.
        r.attempts.slice(0, -1).forEach((a) => assert.isNotNull(a.errorClass))
        assert.isTrue(r.final.errorClass === null || r.attempts.length === 6)
      }
    }).pipe(Effect.scoped))

  it.live("keeps what arrived: the status and the partial body of a truncated answer, the status of a 500", () =>
    Effect.gen(function*() {
      const s = yield* fakeServer()
      const client = yield* makeExternalClient(clientOptions({ retry: { maxAttempts: 1, baseDelayMs: 1, maxDelayMs: 1, jitter: false } }))
      s.failNext("truncated_body", "server_error")
      const truncated = (yield* client.call(echo(s))).final
      assert.strictEqual(truncated.status, 200)
      assert.isAbove(truncated.responseText!.length, 0)
      assert.isUndefined(truncated.responseJson)
      assert.match(truncated.errorMessage!, /ended after \d+ of \d+ bytes/)
      const failed = (yield* client.call(echo(s))).final
      assert.strictEqual(failed.status, 500)
      assert.deepStrictEqual((failed.responseJson as any).error.type, "server_error")
    }).pipe(Effect.scoped))

  it.live("gives up after maxAttempts with every attempt reported", () =>
    Effect.gen(function*() {
      const s = yield* fakeServer()
      const client = yield* makeExternalClient(clientOptions())
      s.failNext("server_error", "server_error", "server_error", "server_error")
      const r = yield* client.call(echo(s))
      assert.deepStrictEqual(classes(r.attempts), ["server_error", "server_error", "server_error"])
      assert.strictEqual(r.final.errorClass, "server_error")
      assert.strictEqual(s.stats().requests, 3)
    }).pipe(Effect.scoped))

  it.live("does not retry a client error, and keeps the API key out of the message", () =>
    Effect.gen(function*() {
      const s = yield* fakeServer({ apiKey: "sk-right" })
      const client = yield* makeExternalClient(clientOptions())
      const r = yield* client.call({ ...chatRequest(s, "hi"), headers: { authorization: "Bearer sk-wrong-secret" } })
      assert.deepStrictEqual(classes(r.attempts), ["client_error"])
      assert.strictEqual(r.final.status, 401)
      assert.strictEqual(r.final.errorMessage, "HTTP 401 Unauthorized: invalid api key")
      assert.notInclude(JSON.stringify(r), "sk-wrong-secret")
    }).pipe(Effect.scoped))

  it.live("retries only the classes it is told to; errorStatuses turn a 200 into an error", () =>
    Effect.gen(function*() {
      const s = yield* fakeServer()
      const strict = yield* makeExternalClient(clientOptions({ retryableClasses: ["timeout"] }))
      s.failNext("server_error")
      assert.deepStrictEqual(classes((yield* strict.call(echo(s))).attempts), ["server_error"])
      const picky = yield* makeExternalClient(clientOptions({ errorStatuses: [200] }))
      const r = yield* picky.call(echo(s))
      assert.deepStrictEqual(classes(r.attempts), ["client_error"])
      assert.strictEqual(r.final.status, 200)
      assert.isDefined(r.final.responseJson)
    }).pipe(Effect.scoped))

  it.live("classifies a closed port as connection_refused and retries it", () =>
    Effect.gen(function*() {
      // A port that was just free: bind, read it, close.
      const port = yield* Effect.promise(() =>
        new Promise<number>((resolve) => {
          const srv = net.createServer().listen(0, "127.0.0.1", () => {
            const p = (srv.address() as net.AddressInfo).port
            srv.close(() => resolve(p))
          })
        })
      )
      const client = yield* makeExternalClient(clientOptions())
      const r = yield* client.call({ method: "GET", url: `http://127.0.0.1:${port}/v1/models`, headers: {} })
      assert.deepStrictEqual(classes(r.attempts), ["connection_refused", "connection_refused", "connection_refused"])
      assert.isNull(r.final.status)
      assert.include(r.final.errorMessage!, `127.0.0.1:${port}`)
    }).pipe(Effect.scoped))

  it.live("classifies a failed TLS handshake as network and does not retry it", () =>
    Effect.gen(function*() {
      // https:// to the fake server, which speaks plain HTTP: the handshake fails.
      const s = yield* fakeServer()
      const client = yield* makeExternalClient(clientOptions())
      const r = yield* client.call({ method: "GET", url: s.baseUrl.replace("http:", "https:") + "/models", headers: {} })
      assert.deepStrictEqual(classes(r.attempts), ["network"])
      assert.isNull(r.final.status)
      assert.match(r.final.errorMessage!, /^request to 127\.0\.0\.1:\d+ failed \(/)
      assert.strictEqual(s.stats().requests, 0)
    }).pipe(Effect.scoped))

  it.live("refuses URLs it cannot send without touching the network", () =>
    Effect.gen(function*() {
      const client = yield* makeExternalClient(clientOptions())
      for (const url of ["not a url", "ftp://127.0.0.1/x"]) {
        const r = yield* client.call({ method: "GET", url, headers: {} })
        assert.deepStrictEqual(classes(r.attempts), ["client_error"])
      }
    }).pipe(Effect.scoped))
})

describe("external client: Retry-After", () => {
  it.live("waits at least Retry-After seconds before the next attempt (gap seen by the server)", () =>
    Effect.gen(function*() {
      const s = yield* fakeServer({ retryAfterSeconds: 1 })
      const client = yield* makeExternalClient(clientOptions())
      s.failNext("rate_limit")
      const r = yield* client.call(echo(s))
      assert.deepStrictEqual(classes(r.attempts), ["rate_limited", null])
      assert.strictEqual(r.attempts[0]!.retryAfterMs, 1000)
      const [first, second] = s.stats().log
      // The server answered the 429 at respondedAt; the retry cannot arrive earlier than
      // one second later (a millisecond of clock rounding aside).
      assert.isAtLeast(second!.arrivedAt - first!.respondedAt!, 999)
    }).pipe(Effect.scoped))

  it.live("reads Retry-After as an HTTP date", () =>
    Effect.gen(function*() {
      const s = yield* fakeServer({ retryAfterSeconds: 1, retryAfterAsDate: true })
      const client = yield* makeExternalClient(clientOptions())
      s.failNext("rate_limit")
      const r = yield* client.call(echo(s))
      const wait = r.attempts[0]!.retryAfterMs
      assert.isNotNull(wait)
      assert.isAtMost(wait!, 1000)
      const [first, second] = s.stats().log
      assert.isAtLeast(second!.arrivedAt - first!.respondedAt!, wait! - 1)
    }).pipe(Effect.scoped))

  it("parses delta-seconds and dates, and nothing else", () => {
    const now = Date.parse("2026-01-01T00:00:00Z")
    assert.strictEqual(parseRetryAfter("3", now), 3000)
    assert.strictEqual(parseRetryAfter(" 0.25 ", now), 250)
    assert.strictEqual(parseRetryAfter("Thu, 01 Jan 2026 00:00:02 GMT", now), 2000)
    assert.strictEqual(parseRetryAfter("Wed, 31 Dec 2025 23:00:00 GMT", now), 0)
    assert.isNull(parseRetryAfter("-1", now))
    assert.isNull(parseRetryAfter("soon", now))
    assert.strictEqual(parseRetryAfter("2026", now), 2_026_000)
    assert.isNull(parseRetryAfter("2026-01-01", now))
    assert.isNull(parseRetryAfter("", now))
    assert.isNull(parseRetryAfter(undefined, now))
  })
})

describe("retrySchedule", () => {
  const failed = (retryAfterMs: number | null): ExternalAttempt => ({
    attempt: 1,
    startedAt: 0,
    latencyMs: 1,
    status: 500,
    errorClass: "server_error",
    errorMessage: "HTTP 500",
    responseText: null,
    responseJson: undefined,
    retryAfterMs
  })
  // Schedule.run also emits the output of the step that ends the schedule: drop it
  // (every call passes more inputs than the schedule takes).
  const delays = (schedule: Schedule.Schedule<unknown, ExternalAttempt>, inputs: ReadonlyArray<ExternalAttempt>) =>
    Schedule.run(Schedule.delays(schedule), 0, inputs).pipe(
      Effect.map((c) => Chunk.toReadonlyArray(c).slice(0, -1).map(Duration.toMillis))
    )

  it.effect("doubles from the base, caps at the max, stops after maxAttempts - 1 retries", () =>
    Effect.gen(function*() {
      const s = retrySchedule({ maxAttempts: 5, baseDelayMs: 100, maxDelayMs: 300, jitter: false })
      assert.deepStrictEqual(yield* delays(s, Array.from({ length: 8 }, () => failed(null))), [100, 200, 300, 300])
      const none = retrySchedule({ maxAttempts: 1, baseDelayMs: 100, maxDelayMs: 300, jitter: false })
      assert.deepStrictEqual(yield* delays(none, [failed(null), failed(null)]), [])
    }))

  it.effect("waits a longer Retry-After instead, even above the max", () =>
    Effect.gen(function*() {
      const s = retrySchedule({ maxAttempts: 4, baseDelayMs: 100, maxDelayMs: 300, jitter: false })
      assert.deepStrictEqual(yield* delays(s, [failed(null), failed(1500), failed(50), failed(null)]), [100, 1500, 300])
    }))

  it.effect("with jitter draws each delay from [delay/2, delay]", () =>
    Effect.gen(function*() {
      const s = retrySchedule({ maxAttempts: 40, baseDelayMs: 100, maxDelayMs: 400, jitter: true })
      const ds = yield* delays(s, Array.from({ length: 39 }, () => failed(null)))
      const caps = ds.map((_, i) => Math.min(100 * 2 ** i, 400))
      ds.forEach((d, i) => {
        assert.isAtLeast(d, caps[i]! / 2)
        assert.isAtMost(d, caps[i]!)
      })
      assert.isAbove(new Set(ds.slice(3)).size, 1)
    }))
})
