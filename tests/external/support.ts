import { Effect } from "effect"
import { type FakeLlmOptions, type FakeLlmServer, startFakeLlm } from "../../src/dev/fake-llm.js"
import type { ExternalClientOptions, ExternalRequest } from "../../src/pipeline/plugins/external/client.js"

/** A fake server for the current scope (closed with it). */
export const fakeServer = (options: FakeLlmOptions = {}) =>
  Effect.acquireRelease(Effect.promise(() => startFakeLlm(options)), (s) => Effect.promise(() => s.close()))

/** Client options for tests: quick retries, no jitter, no rate limit. */
export const clientOptions = (patch: Partial<ExternalClientOptions> = {}): ExternalClientOptions => ({
  service: "fake",
  timeoutMs: 5_000,
  retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 5, jitter: false },
  poolSize: 4,
  adaptive: false,
  ...patch
})

export const echo = (s: FakeLlmServer, body: unknown = { text: "hello" }, headers: Record<string, string> = {}): ExternalRequest => ({
  method: "POST",
  url: `${s.baseUrl}/echo`,
  headers,
  body
})

export const chatRequest = (s: FakeLlmServer, content: string): ExternalRequest => ({
  method: "POST",
  url: `${s.baseUrl}/chat/completions`,
  headers: { authorization: "Bearer sk-test" },
  body: { model: "fake-gpt", messages: [{ role: "user", content }] }
})

/** Polls `check` every 5 ms until it holds (the test's own timeout bounds it). */
export const eventually = (check: () => boolean) =>
  Effect.gen(function*() {
    while (!check()) yield* Effect.sleep("5 millis")
  })
