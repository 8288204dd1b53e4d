import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Effect, Option } from "effect"
import { printHuman, printNote } from "./common.js"
import { CliExit, ExitCodes, usageError } from "./exit.js"

const rate = (name: string, what: string) =>
  Options.float(name).pipe(
    Options.optional,
    Options.withDescription(`Fraction of requests (0..1) that get ${what}; default: its share of --fault-rate, else 0`)
  )

const fakeLlmOptions = {
  port: Options.integer("port").pipe(
    Options.withDefault(0),
    Options.withDescription("TCP port to listen on; 0 (the default) picks a free one (the bound URL is printed on stdout)")
  ),
  host: Options.text("host").pipe(
    Options.withDefault("127.0.0.1"),
    Options.withDescription("Address to bind; default 127.0.0.1 (the server has no authentication: keep it on loopback)")
  ),
  latencyMs: Options.integer("latency-ms").pipe(
    Options.withDefault(0),
    Options.withDescription("Delay before every answer, in milliseconds; default 0")
  ),
  latencyJitterMs: Options.integer("latency-jitter-ms").pipe(
    Options.withDefault(0),
    Options.withDescription("Extra delay of 0..N ms per request, derived from the request; default 0")
  ),
  seed: Options.integer("seed").pipe(
    Options.withDefault(0),
    Options.withDescription("Seed for choosing which requests get faults; the same seed and requests give the same faults")
  ),
  faultRate: Options.float("fault-rate").pipe(
    Options.withDefault(0),
    Options.withDescription(
      "Fraction of requests (0..1) that get some fault, shared evenly by the six kinds below; a kind given its own rate keeps it"
    )
  ),
  rateLimitRate: rate("rate-limit-rate", "429 Too Many Requests with Retry-After"),
  serverErrorRate: rate("server-error-rate", "500 Internal Server Error"),
  timeoutRate: rate("timeout-rate", "no answer at all (the client's timeout must end them)"),
  malformedJsonRate: rate("malformed-json-rate", "a 200 whose body is not JSON"),
  connectionResetRate: rate("connection-reset-rate", "a TCP reset before any answer"),
  truncatedBodyRate: rate("truncated-body-rate", "a 200 whose body stops half way (the connection closes)"),
  retryAfterSeconds: Options.integer("retry-after-seconds").pipe(
    Options.withDefault(1),
    Options.withDescription("Retry-After sent with 429 answers, seconds; default 1")
  ),
  replyVariant: Options.text("reply-variant").pipe(
    Options.optional,
    Options.withDescription("Salt for replies: a different variant changes every reply's bytes (ids, confidences, text)")
  ),
  flipSentiment: Options.boolean("flip-sentiment").pipe(
    Options.withDescription("Invert every sentiment (positive ↔ negative), so decisions change too")
  ),
  apiKey: Options.text("api-key").pipe(
    Options.optional,
    Options.withDescription("Require `Authorization: Bearer KEY`; without this option any key (or none) is accepted")
  )
}

/** Resolves on SIGTERM (SIGINT is the CLI's: it interrupts the command). */
const untilSigterm = Effect.async<void>((resume) => {
  const onTerm = () => resume(Effect.void)
  process.once("SIGTERM", onTerm)
  return Effect.sync(() => process.off("SIGTERM", onTerm))
})

/** `runledger dev fake-llm`: a fake OpenAI-compatible server until SIGINT/SIGTERM. */
const fakeLlmCommand = Command.make("fake-llm", fakeLlmOptions, (o) =>
  Effect.gen(function*() {
    const ratesGiven: ReadonlyArray<readonly [string, number]> = [
      ["fault-rate", o.faultRate],
      ...([
        ["rate-limit-rate", o.rateLimitRate],
        ["server-error-rate", o.serverErrorRate],
        ["timeout-rate", o.timeoutRate],
        ["malformed-json-rate", o.malformedJsonRate],
        ["connection-reset-rate", o.connectionResetRate],
        ["truncated-body-rate", o.truncatedBodyRate]
      ] as const).flatMap(([name, value]) => (Option.isSome(value) ? [[name, value.value] as const] : []))
    ]
    for (const [name, value] of ratesGiven) {
      if (!(value >= 0 && value <= 1)) return yield* Effect.fail(usageError(`--${name}: ${value} is not between 0 and 1`))
    }
    const share = o.faultRate / 6
    const faults = {
      rate_limit: Option.getOrElse(o.rateLimitRate, () => share),
      server_error: Option.getOrElse(o.serverErrorRate, () => share),
      timeout: Option.getOrElse(o.timeoutRate, () => share),
      malformed_json: Option.getOrElse(o.malformedJsonRate, () => share),
      connection_reset: Option.getOrElse(o.connectionResetRate, () => share),
      truncated_body: Option.getOrElse(o.truncatedBodyRate, () => share)
    }
    const total = Object.values(faults).reduce((a, b) => a + b, 0)
    if (total > 1 + 1e-9) return yield* Effect.fail(usageError(`the fault rates add up to ${Math.round(total * 1000) / 1000}, more than 1`))
    // Loaded here, not at the top: commands other than this one do not pay for it.
    const { startFakeLlm } = yield* Effect.promise(() => import("../dev/fake-llm.js"))
    const server = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () =>
          startFakeLlm({
            host: o.host,
            port: o.port,
            latencyMs: o.latencyMs,
            latencyJitterMs: o.latencyJitterMs,
            seed: o.seed,
            faults,
            retryAfterSeconds: o.retryAfterSeconds,
            flipSentiment: o.flipSentiment,
            ...(Option.isSome(o.replyVariant) ? { replyVariant: o.replyVariant.value } : {}),
            ...(Option.isSome(o.apiKey) ? { apiKey: o.apiKey.value } : {})
          }),
        catch: (e) =>
          new CliExit({
            code: ExitCodes.failed,
            message: `fake-llm: cannot listen on ${o.host}:${o.port}: ${e instanceof Error ? e.message : String(e)}`
          })
      }),
      (s) =>
        Effect.promise(async () => {
          const stats = s.stats()
          await s.close()
          process.stderr.write(`fake-llm: stopped after ${stats.requests} requests ${JSON.stringify(stats.byOutcome)}\n`)
        })
    )
    yield* printHuman(server.baseUrl)
    yield* printNote(`fake-llm: listening; OpenAI base_url ${server.baseUrl}; stats at ${server.url}/admin/stats; stop with Ctrl-C or SIGTERM`)
    yield* untilSigterm
  }).pipe(Effect.scoped)
).pipe(
  Command.withDescription(
    "Serve a fake OpenAI-compatible API (POST /v1/chat/completions, GET /v1/models, POST /v1/echo) with deterministic " +
      "replies derived from the prompt, for tests and demos: latency and faults (429, 500, hangs, malformed JSON, " +
      "connection resets, truncated bodies) at chosen rates. Prints the base URL on stdout."
  )
)

export const devCommand = Command.make("dev").pipe(
  Command.withDescription("Development tools: a fake LLM server for tests and demos"),
  Command.withSubcommands([fakeLlmCommand])
)
