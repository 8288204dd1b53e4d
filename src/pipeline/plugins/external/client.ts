/**
 * The client of external calls (the `llm` and `http` transforms): JSON over HTTP(S)
 * with retries, a per-service rate limit, a pool of in-flight calls with an adaptive
 * (AIMD) size, a per-attempt timeout, and every attempt reported.
 *
 * One attempt: take a pool permit, then a rate-limit token, then send; the permit is
 * held until the answer is read (or the attempt fails), never while waiting to retry.
 * Between attempts the delays come from `retrySchedule` (retry.ts): exponential with a
 * cap and jitter, at least the server's Retry-After.
 *
 * Error classes (exactly one per failed attempt):
 * - `timeout`: no complete answer within `timeoutMs` (the request is aborted)
 * - `connection_reset`: the connection closed or reset before the status line
 * - `connection_refused`: nothing listens at the address
 * - `rate_limited`: HTTP 429
 * - `server_error`: HTTP 5xx
 * - `client_error`: any other 4xx
 * - `malformed_response`: a 2xx/3xx whose body is not JSON (or is empty, except 204/205)
 * - `truncated_body`: the connection ended before the body was complete
 * - `network`: any other transport failure (DNS, unreachable host, TLS)
 * - `interrupted`: never produced here; the fiber is interrupted instead, and callers
 *   record the call as interrupted
 * A status listed in `errorStatuses` is an error whatever its range: 429 `rate_limited`,
 * ≥ 500 `server_error`, anything else `client_error`.
 *
 * Rate limiters are shared per `service` through a `RateLimiterRegistry`
 * (rate-limit.ts): pass one registry to every client of a run so that clients naming
 * the same service share one budget. Without one, the client has its own.
 */
import { Clock, Effect, Scope } from "effect"
import * as http from "node:http"
import * as https from "node:https"
import { makeRateLimiterRegistry, type RateLimiterRegistry } from "./rate-limit.js"
import { DEFAULT_RETRYABLE, parseRetryAfter, retrySchedule } from "./retry.js"
import { makeThrottle } from "./throttle.js"
import type {
  CallHooks,
  ErrorClass,
  ExternalAttempt,
  ExternalClient,
  ExternalClientOptions,
  ExternalRequest,
  ExternalResult
} from "./types.js"

export type {
  CallHooks,
  ErrorClass,
  ExternalAttempt,
  ExternalClient,
  ExternalClientOptions,
  ExternalRequest,
  ExternalResult
} from "./types.js"
export { DEFAULT_RETRYABLE } from "./retry.js"
export { makeRateLimiterRegistry, type RateLimiterRegistry } from "./rate-limit.js"

/** What one HTTP exchange gave, before classification. */
type Exchange =
  | { readonly _tag: "Response"; readonly status: number; readonly statusText: string; readonly text: string; readonly retryAfter: string | null }
  | { readonly _tag: "Failed"; readonly errorClass: ErrorClass; readonly message: string; readonly status: number | null; readonly text: string | null }

const oneLine = (s: string, max = 200): string => {
  const line = s.replace(/\s+/g, " ").trim()
  return line.length > max ? `${line.slice(0, max - 1)}…` : line
}

/** The transport error of a request that got no status line, by its code. */
const transportClass = (e: NodeJS.ErrnoException): ErrorClass => {
  switch (e.code) {
    case "ECONNRESET":
    case "EPIPE":
    case "ECONNABORTED":
    case "UND_ERR_SOCKET":
      return "connection_reset"
    case "ECONNREFUSED":
      return "connection_refused"
    case "ETIMEDOUT":
      return "timeout"
    default:
      return "network"
  }
}

const transportMessage = (e: NodeJS.ErrnoException, url: URL): string => {
  const what = e.code === "ECONNREFUSED"
    ? `connection refused by ${url.host}`
    : e.code === "ECONNRESET"
    ? `connection to ${url.host} reset before any response`
    : `request to ${url.host} failed`
  return oneLine(`${what} (${e.code ?? e.message})`)
}

/**
 * Sends one request and reads the whole answer, aborting it after `timeoutMs` or when
 * the fiber is interrupted.
 */
const exchange = (
  request: ExternalRequest,
  url: URL,
  agents: { readonly http: http.Agent; readonly https: https.Agent },
  timeoutMs: number
): Effect.Effect<Exchange> =>
  Effect.async<Exchange>((resume) => {
    const abort = new AbortController()
    let settled = false
    let timedOut = false
    let status: number | null = null
    let received = 0
    const chunks: Array<Buffer> = []
    const settle = (x: Exchange) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resume(Effect.succeed(x))
    }
    const failed = (errorClass: ErrorClass, message: string) =>
      settle({ _tag: "Failed", errorClass, message, status, text: status === null ? null : Buffer.concat(chunks).toString("utf8") })
    const timer = setTimeout(() => {
      timedOut = true
      abort.abort()
      failed("timeout", `no complete response from ${url.host} within ${timeoutMs} ms`)
    }, timeoutMs)

    const body = request.body === undefined ? undefined : Buffer.from(JSON.stringify(request.body), "utf8")
    const headers: Record<string, string> = { accept: "application/json", ...request.headers }
    if (body !== undefined) {
      headers["content-type"] = "application/json"
      headers["content-length"] = String(body.length)
    }
    const isHttps = url.protocol === "https:"
    let req: http.ClientRequest
    try {
      req = (isHttps ? https : http).request(url, {
        method: request.method,
        headers,
        agent: isHttps ? agents.https : agents.http,
        signal: abort.signal
      }, onResponse)
    } catch (e) {
      // Node checks header names and values before sending (its message names the header, not the value).
      failed("client_error", oneLine(`request to ${url.host} not sent: ${e instanceof Error ? e.message : String(e)}`))
      return
    }
    function onResponse(res: http.IncomingMessage) {
      status = res.statusCode ?? 0
      const expected = res.headers["content-length"] !== undefined ? Number(res.headers["content-length"]) : null
      res.on("data", (c: Buffer) => {
        chunks.push(c)
        received += c.length
      })
      res.on("end", () => {
        if (!res.complete) return
        const retryAfter = res.headers["retry-after"]
        settle({
          _tag: "Response",
          status: status!,
          statusText: res.statusMessage ?? "",
          text: Buffer.concat(chunks).toString("utf8"),
          retryAfter: typeof retryAfter === "string" ? retryAfter : null
        })
      })
      const truncated = () => {
        if (settled || timedOut) return
        failed(
          "truncated_body",
          expected !== null
            ? `response body from ${url.host} ended after ${received} of ${expected} bytes (HTTP ${status})`
            : `response body from ${url.host} ended early after ${received} bytes (HTTP ${status})`
        )
      }
      res.on("error", truncated)
      res.on("close", () => {
        if (!res.complete) truncated()
      })
    }
    req.on("error", (e: NodeJS.ErrnoException) => {
      if (settled || timedOut) return
      if (status !== null) {
        failed("truncated_body", `response body from ${url.host} ended early after ${received} bytes (HTTP ${status})`)
      } else failed(transportClass(e), transportMessage(e, url))
    })
    req.end(body)
    return Effect.sync(() => {
      settled = true
      clearTimeout(timer)
      abort.abort()
    })
  })

const errorClassOfStatus = (status: number, errorStatuses: ReadonlySet<number>): ErrorClass | null => {
  if (status === 429) return "rate_limited"
  if (status >= 500) return "server_error"
  if (status >= 400) return "client_error"
  if (errorStatuses.has(status)) return "client_error"
  return null
}

/** A short reason from an error body ({"error": {"message"}} or {"message"}). */
const errorDetail = (json: unknown): string | null => {
  if (json === null || typeof json !== "object") return null
  const o = json as { error?: unknown; message?: unknown }
  if (typeof o.message === "string") return o.message
  if (typeof o.error === "string") return o.error
  if (o.error !== null && typeof o.error === "object" && typeof (o.error as { message?: unknown }).message === "string") {
    return (o.error as { message: string }).message
  }
  return null
}

const parseJson = (text: string): { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly reason: string } => {
  try {
    return { ok: true, value: JSON.parse(text) }
  } catch (e) {
    return { ok: false, reason: e instanceof Error ? e.message : String(e) }
  }
}

/** Turns one exchange into the attempt the caller sees. */
export const classifyExchange = (
  x: Exchange,
  attempt: number,
  startedAt: number,
  latencyMs: number,
  now: number,
  errorStatuses: ReadonlySet<number>
): ExternalAttempt => {
  if (x._tag === "Failed") {
    const parsed = x.text === null || x.text === "" ? undefined : parseJson(x.text)
    return {
      attempt,
      startedAt,
      latencyMs,
      status: x.status,
      errorClass: x.errorClass,
      errorMessage: x.message,
      responseText: x.text,
      responseJson: parsed?.ok === true ? parsed.value : undefined,
      retryAfterMs: null
    }
  }
  const retryAfterMs = parseRetryAfter(x.retryAfter, now)
  const parsed = x.text === "" ? undefined : parseJson(x.text)
  const json = parsed?.ok === true ? parsed.value : undefined
  const base = { attempt, startedAt, latencyMs, status: x.status, responseText: x.text, responseJson: json, retryAfterMs }
  const statusClass = errorClassOfStatus(x.status, errorStatuses)
  if (statusClass !== null) {
    const detail = errorDetail(json)
    return {
      ...base,
      errorClass: statusClass,
      errorMessage: oneLine(`HTTP ${x.status}${x.statusText === "" ? "" : ` ${x.statusText}`}${detail === null ? "" : `: ${detail}`}`)
    }
  }
  if (parsed === undefined) {
    return x.status === 204 || x.status === 205
      ? { ...base, errorClass: null, errorMessage: null }
      : { ...base, errorClass: "malformed_response", errorMessage: `HTTP ${x.status} with an empty body where JSON was expected` }
  }
  if (!parsed.ok) {
    return {
      ...base,
      errorClass: "malformed_response",
      errorMessage: oneLine(`HTTP ${x.status} body is not JSON (${parsed.reason}): ${x.text.slice(0, 60)}`)
    }
  }
  return { ...base, errorClass: null, errorMessage: null }
}

/** A request that cannot be sent at all: one failed attempt, nothing on the wire. */
const invalid = (message: string): ExternalResult => {
  const attempt: ExternalAttempt = {
    attempt: 1,
    startedAt: Date.now(),
    latencyMs: 0,
    status: null,
    errorClass: "client_error",
    errorMessage: oneLine(message),
    responseText: null,
    responseJson: undefined,
    retryAfterMs: null
  }
  return { attempts: [attempt], final: attempt }
}

/**
 * A client for one plugin (or one service). `registry` shares rate limiters between
 * clients of a run; without it the client gets its own.
 */
export const makeExternalClient = (
  options: ExternalClientOptions,
  registry?: RateLimiterRegistry
): Effect.Effect<ExternalClient, never, Scope.Scope> =>
  Effect.gen(function*() {
    const limiters = registry ?? (yield* makeRateLimiterRegistry)
    const limit = yield* limiters.limiterFor(options.service, options.rateLimit)
    const throttle = yield* makeThrottle(options.poolSize, options.adaptive)
    // Keep-alive connections, not capped by the agent: the pool (throttle) bounds the
    // attempts in flight, and an agent cap would queue an attempt behind sockets that
    // are still closing (a reset, an abort), its timeout running before it is sent.
    const agents = yield* Effect.acquireRelease(
      Effect.sync(() => ({
        http: new http.Agent({ keepAlive: true }),
        https: new https.Agent({ keepAlive: true })
      })),
      (a) =>
        Effect.sync(() => {
          a.http.destroy()
          a.https.destroy()
        })
    )
    const retryable = new Set(options.retryableClasses ?? DEFAULT_RETRYABLE)
    const errorStatuses = new Set(options.errorStatuses ?? [])
    const schedule = retrySchedule(options.retry)
    const timeoutMs = Math.max(1, options.timeoutMs)

    const attemptOnce = (request: ExternalRequest, url: URL, n: number) =>
      throttle.withPermit(
        limit(Effect.gen(function*() {
          const startedAt = yield* Clock.currentTimeMillis
          const t0 = performance.now()
          const x = yield* exchange(request, url, agents, timeoutMs)
          const latencyMs = Math.round((performance.now() - t0) * 1000) / 1000
          const attempt = classifyExchange(x, n, startedAt, latencyMs, yield* Clock.currentTimeMillis, errorStatuses)
          if (attempt.errorClass === "rate_limited") yield* throttle.onRateLimited(startedAt)
          else if (attempt.errorClass === null) yield* throttle.onSuccess
          return attempt
        }))
      )

    const call = (request: ExternalRequest, hooks?: CallHooks): Effect.Effect<ExternalResult> =>
      Effect.suspend(() => {
        let url: URL
        try {
          url = new URL(request.url)
        } catch {
          return Effect.succeed(invalid(`not a valid URL: ${request.url}`))
        }
        if (url.protocol !== "http:" && url.protocol !== "https:") return Effect.succeed(invalid(`not an http(s) URL: ${url.protocol}//${url.host}`))
        const attempts: Array<ExternalAttempt> = []
        const once = Effect.suspend(() => attemptOnce(request, url, attempts.length + 1)).pipe(
          Effect.tap((a) => {
            attempts.push(a)
            return hooks?.onAttempt?.(a) ?? Effect.void
          }),
          Effect.filterOrFail((a) => a.errorClass === null || !retryable.has(a.errorClass), (a) => a)
        )
        return once.pipe(
          Effect.retry(schedule),
          Effect.merge,
          Effect.map((final) => ({ attempts, final }))
        )
      })

    return { call, currentPermits: throttle.currentPermits }
  })
