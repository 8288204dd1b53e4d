/**
 * A fake OpenAI-compatible server for tests and demos: deterministic replies derived
 * from the prompt, configurable latency, and fault injection at configurable rates.
 *
 * Endpoints:
 * - `POST /v1/chat/completions` (and Azure's `/openai/deployments/{name}/chat/completions`)
 * - `GET  /v1/models`
 * - `POST /v1/echo`: a generic JSON endpoint (echo plus a deterministic score)
 * - `GET  /health`, `GET /admin/stats`
 *
 * Replies are a pure function of (request body, seed, replyVariant): the same request
 * gets byte-identical replies across runs and servers. Faults are chosen from a hash of
 * (seed, request body, how many times this exact body was seen), so which request fails
 * does not depend on the order concurrent requests arrive in, and a retried request
 * (the same body again) draws a fresh outcome.
 */
import { createHash } from "node:crypto"
import * as http from "node:http"
import type { AddressInfo, Socket } from "node:net"

export type FakeFault =
  | "rate_limit" // 429 with Retry-After
  | "server_error" // 500 with a JSON error body
  | "timeout" // accepts the request and never answers (until the client gives up)
  | "malformed_json" // 200 with a body that is not JSON
  | "connection_reset" // TCP reset before any response
  | "truncated_body" // 200, Content-Length of the full reply, half of it sent, then the socket closed

export const FAKE_FAULTS: ReadonlyArray<FakeFault> = [
  "rate_limit",
  "server_error",
  "timeout",
  "malformed_json",
  "connection_reset",
  "truncated_body"
]

/** Fraction (0..1) of requests that get each fault; the sum must be ≤ 1. */
export type FakeFaultRates = Partial<Record<FakeFault, number>>

export interface FakeLlmOptions {
  /** Default 127.0.0.1. */
  readonly host?: string
  /** Default 0 (an ephemeral port; read it from `server.port`). */
  readonly port?: number
  /** Delay before every answer (including faults), ms. Default 0. */
  readonly latencyMs?: number
  /** Extra delay, uniformly 0..jitter ms, derived from the request hash. Default 0. */
  readonly latencyJitterMs?: number
  readonly faults?: FakeFaultRates
  /**
   * Fraction of requests that get some fault, shared evenly by the six kinds; a kind
   * named in `faults` has its own rate instead.
   */
  readonly faultRate?: number
  /** How many requests `stats().log` keeps (the latest); counts cover all. Default 100,000. */
  readonly maxLog?: number
  /** Seed mixed into fault selection. Default 0. */
  readonly seed?: number
  /** Retry-After on 429 replies, seconds. Default 1. */
  readonly retryAfterSeconds?: number
  /** Send Retry-After as an HTTP date instead of seconds. Default false. */
  readonly retryAfterAsDate?: boolean
  /** Salt for replies: a different variant changes every reply (ids, confidences, texts). */
  readonly replyVariant?: string
  /** Invert every sentiment (positive ↔ negative): decisions change, not only bytes. */
  readonly flipSentiment?: boolean
  /** When set, requests without `Authorization: Bearer <key>` get 401. */
  readonly apiKey?: string
  /** Model names listed by GET /v1/models. Default ["fake-gpt"]. */
  readonly models?: ReadonlyArray<string>
}

export type FakeOutcome = "ok" | FakeFault | "unauthorized" | "bad_request" | "not_found"

export interface FakeRequestRecord {
  readonly seq: number
  readonly method: string
  readonly path: string
  /** When the request's body had been read, epoch ms. */
  readonly arrivedAt: number
  /** When the answer (or fault) was sent, epoch ms; null while pending or when none was sent. */
  respondedAt: number | null
  outcome: FakeOutcome
  /** The client closed the connection before the answer was complete. */
  closedByClient: boolean
  /** SHA-256 of the request body. */
  readonly bodyHash: string
}

export interface FakeLlmStats {
  /** Requests seen since the start (or the last resetStats). */
  readonly requests: number
  readonly byOutcome: Readonly<Record<string, number>>
  readonly inFlight: number
  readonly maxInFlight: number
  /** Requests the client abandoned before the answer was complete (timeouts, interruptions). */
  readonly closedByClient: number
  /** The requests, in arrival order (the latest `maxLog` of them). */
  readonly log: ReadonlyArray<Readonly<FakeRequestRecord>>
}

export interface FakeLlmServer {
  /** Root URL, e.g. http://127.0.0.1:40123 */
  readonly url: string
  /** OpenAI base_url, `${url}/v1` */
  readonly baseUrl: string
  readonly host: string
  readonly port: number
  readonly stats: () => FakeLlmStats
  readonly resetStats: () => void
  /** Changes options at run time (faults, latency, replyVariant, ...); host/port are fixed. */
  readonly configure: (patch: Omit<FakeLlmOptions, "host" | "port">) => void
  /** The next requests get these faults, in order, before rates apply again. */
  readonly failNext: (...faults: ReadonlyArray<FakeFault>) => void
  readonly close: () => Promise<void>
}

/** Request header that forces a fault on one request (tests of the http transform). */
export const FAULT_HEADER = "x-fake-llm-fault"

const POSITIVE = ["good", "great", "love", "excellent", "happy", "wonderful", "amazing", "best", "fantastic", "nice", "pleased", "perfect"]
const NEGATIVE = ["bad", "terrible", "hate", "awful", "sad", "worst", "poor", "horrible", "broken", "angry", "disappointed", "refund"]

const sha256 = (s: string): string => createHash("sha256").update(s).digest("hex")

/** A number in [0, 1) from a hex digest. */
const unit = (hex: string, offset = 0): number => parseInt(hex.slice(offset, offset + 12), 16) / 2 ** 48

export type Sentiment = "positive" | "negative" | "neutral"

/** Keyword sentiment: the fake model's whole intelligence. Exported for tests. */
export const sentimentOf = (text: string): Sentiment => {
  const words = text.toLowerCase().match(/[a-z']+/g) ?? []
  let score = 0
  for (const w of words) {
    if (POSITIVE.includes(w)) score++
    else if (NEGATIVE.includes(w)) score--
  }
  return score > 0 ? "positive" : score < 0 ? "negative" : "neutral"
}

const flip = (s: Sentiment): Sentiment => (s === "positive" ? "negative" : s === "negative" ? "positive" : s)

interface ChatMessage {
  readonly role?: unknown
  readonly content?: unknown
}

const messageText = (m: ChatMessage): string =>
  typeof m.content === "string"
    ? m.content
    : Array.isArray(m.content)
    ? m.content.map((p: { text?: unknown }) => (typeof p?.text === "string" ? p.text : "")).join("")
    : ""

/** Fills a JSON schema's properties with values derived from the sentiment. */
const fillSchema = (schema: unknown, sentiment: Sentiment, confidence: number, h: string, depth = 0): unknown => {
  const s = (schema ?? {}) as { type?: unknown; properties?: Record<string, unknown>; enum?: ReadonlyArray<unknown> }
  if (Array.isArray(s.enum) && s.enum.length > 0) {
    const match = s.enum.find((v) => v === sentiment)
    return match ?? s.enum[Math.floor(unit(h, 20) * s.enum.length)]
  }
  const type = Array.isArray(s.type) ? s.type[0] : s.type
  if ((type === "object" || s.properties !== undefined) && depth < 4) {
    const out: Record<string, unknown> = {}
    for (const [key, sub] of Object.entries(s.properties ?? {})) {
      const subType = (sub as { type?: unknown })?.type
      if (subType === "string" && /sentiment|label|class|category/i.test(key)) out[key] = sentiment
      else out[key] = fillSchema(sub, sentiment, confidence, sha256(h + key), depth + 1)
    }
    return out
  }
  switch (type) {
    case "number":
      return confidence
    case "integer":
      return sentiment === "positive" ? 1 : sentiment === "negative" ? -1 : 0
    case "boolean":
      return sentiment === "positive"
    case "array":
      return []
    case "null":
      return null
    default:
      return sentiment
  }
}

const wantsJson = (body: Record<string, unknown>, prompt: string): { readonly schema: unknown } | null => {
  const rf = body["response_format"] as { type?: unknown; json_schema?: { schema?: unknown } } | undefined
  if (rf?.type === "json_schema") return { schema: rf.json_schema?.schema ?? null }
  if (rf?.type === "json_object") return { schema: null }
  return /\bjson\b/i.test(prompt) ? { schema: null } : null
}

const tokens = (text: string): number => Math.max(1, Math.ceil(text.length / 4))

/** The deterministic reply to a chat completion request (exported for tests and docs). */
export const chatReply = (
  body: Record<string, unknown>,
  options: { readonly replyVariant?: string; readonly flipSentiment?: boolean; readonly model?: string } = {}
): Record<string, unknown> => {
  const messages = (Array.isArray(body["messages"]) ? body["messages"] : []) as ReadonlyArray<ChatMessage>
  const userMessages = messages.filter((m) => m.role === "user")
  const prompt = userMessages.length > 0 ? messageText(userMessages[userMessages.length - 1]!) : ""
  const all = messages.map(messageText).join("\n")
  const variant = options.replyVariant ?? ""
  const h = sha256(`${variant}\u0000${all}`)
  let sentiment = sentimentOf(prompt)
  if (options.flipSentiment === true) sentiment = flip(sentiment)
  const confidence = Math.round((0.55 + 0.44 * unit(h)) * 100) / 100
  const json = wantsJson(body, all)
  const content = json !== null
    ? JSON.stringify(
      json.schema !== null && typeof json.schema === "object"
        ? fillSchema(json.schema, sentiment, confidence, h)
        : { sentiment, confidence }
    )
    : `Sentiment: ${sentiment} (confidence ${confidence.toFixed(2)}).${variant === "" ? "" : ` [${variant}]`}`
  const model = options.model ?? (typeof body["model"] === "string" ? body["model"] : "fake-gpt")
  const promptTokens = messages.reduce((n, m) => n + tokens(messageText(m)), 0)
  const completionTokens = tokens(content)
  return {
    id: `chatcmpl-${h.slice(0, 24)}`,
    object: "chat.completion",
    // Fixed, so that the same request gets byte-identical replies on every run.
    created: 1767225600,
    model,
    choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
    usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens }
  }
}

/** The deterministic reply of POST /v1/echo. */
export const echoReply = (body: unknown, options: { readonly replyVariant?: string; readonly flipSentiment?: boolean } = {}) => {
  const text = JSON.stringify(body ?? null)
  const h = sha256(`${options.replyVariant ?? ""}\u0000${text}`)
  const strings = JSON.stringify(body ?? null).replace(/[{}[\]":,]/g, " ")
  let sentiment = sentimentOf(strings)
  if (options.flipSentiment === true) sentiment = flip(sentiment)
  return { echo: body ?? null, score: Math.round(unit(h) * 1000) / 1000, label: sentiment, length: text.length }
}

const errorBody = (message: string, type: string, code: string | number) => JSON.stringify({ error: { message, type, code } })

/** Why these options cannot work, or null. */
const optionsProblem = (o: FakeLlmOptions): string | null => {
  const rates: Array<readonly [string, number]> = [["faultRate", o.faultRate ?? 0]]
  for (const f of FAKE_FAULTS) rates.push([`faults.${f}`, o.faults?.[f] ?? (o.faultRate ?? 0) / FAKE_FAULTS.length])
  for (const [name, r] of rates) if (!(r >= 0 && r <= 1)) return `${name}: ${r} is not between 0 and 1`
  const total = rates.slice(1).reduce((a, [, r]) => a + r, 0)
  return total > 1 + 1e-9 ? `the fault rates add up to ${total}, more than 1` : null
}

/** Starts the server; resolves once it listens (rejects on options that cannot work). */
export const startFakeLlm = (initial: FakeLlmOptions = {}): Promise<FakeLlmServer> => {
  const problem = optionsProblem(initial)
  if (problem !== null) return Promise.reject(new Error(`fake-llm: ${problem}`))
  let options: FakeLlmOptions = { ...initial }
  const seen = new Map<string, number>()
  const forced: Array<FakeFault> = []
  let log: Array<FakeRequestRecord> = []
  let total = 0
  let closedCount = 0
  let byOutcome: Record<string, number> = {}
  const count = (outcome: FakeOutcome, delta: number) => {
    byOutcome[outcome] = (byOutcome[outcome] ?? 0) + delta
    if (byOutcome[outcome] === 0) delete byOutcome[outcome]
  }
  let seq = 0
  let inFlight = 0
  let maxInFlight = 0
  const sockets = new Set<Socket>()
  const timers = new Set<NodeJS.Timeout>()

  const later = (ms: number, f: () => void) => {
    if (ms <= 0) return f()
    const t = setTimeout(() => {
      timers.delete(t)
      f()
    }, ms)
    timers.add(t)
  }

  const pickFault = (bodyHash: string, header: string | undefined): FakeFault | null => {
    if (header !== undefined && (FAKE_FAULTS as ReadonlyArray<string>).includes(header)) return header as FakeFault
    const next = forced.shift()
    if (next !== undefined) return next
    const rates = FAKE_FAULTS.map((f) => options.faults?.[f] ?? (options.faultRate ?? 0) / FAKE_FAULTS.length)
    if (rates.every((r) => r <= 0)) return null
    // Keyed by a prefix of the hash: enough to tell bodies apart, half the memory.
    const key = bodyHash.slice(0, 24)
    const n = (seen.get(key) ?? 0) + 1
    seen.set(key, n)
    const u = unit(sha256(`${options.seed ?? 0}\u0000${bodyHash}\u0000${n}`))
    let acc = 0
    for (let i = 0; i < FAKE_FAULTS.length; i++) {
      acc += rates[i]!
      if (u < acc) return FAKE_FAULTS[i]!
    }
    return null
  }

  const handle = (req: http.IncomingMessage, res: http.ServerResponse, raw: string) => {
    const url = new URL(req.url ?? "/", "http://fake")
    const path = url.pathname
    const bodyHash = sha256(raw)
    const record: FakeRequestRecord = {
      seq: ++seq,
      method: req.method ?? "GET",
      path,
      arrivedAt: Date.now(),
      respondedAt: null,
      outcome: "ok",
      closedByClient: false,
      bodyHash
    }
    let done = false
    inFlight++
    maxInFlight = Math.max(maxInFlight, inFlight)
    const finish = () => {
      if (done) return
      done = true
      inFlight--
    }
    res.on("close", () => {
      if (!res.writableFinished && record.outcome !== "connection_reset" && record.outcome !== "truncated_body") {
        record.closedByClient = true
        closedCount++
      }
      finish()
    })

    const send = (status: number, body: string, headers: Record<string, string> = {}) => {
      if (res.destroyed) return
      record.respondedAt = Date.now()
      res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...headers })
      res.end(body)
    }

    const isChat = req.method === "POST" &&
      (path === "/v1/chat/completions" || /^\/openai\/deployments\/[^/]+\/chat\/completions$/.test(path))
    const isEcho = req.method === "POST" && path === "/v1/echo"
    const known = isChat || isEcho || (req.method === "GET" && ["/v1/models", "/health", "/admin/stats"].includes(path))

    const setOutcome = (o: FakeOutcome) => {
      count(record.outcome, -1)
      record.outcome = o
      count(o, 1)
    }
    total++
    count("ok", 1)
    log.push(record)
    const maxLog = Math.max(1, options.maxLog ?? 100_000)
    if (log.length > 2 * maxLog) log = log.slice(-maxLog)

    if (!known) {
      setOutcome("not_found")
      return send(404, errorBody(`no route ${req.method} ${path}`, "invalid_request_error", "not_found"))
    }
    if (path === "/health") return send(200, JSON.stringify({ status: "ok" }))
    if (path === "/admin/stats") {
      const { log: entries, ...counts } = statsOf()
      return send(200, JSON.stringify(url.searchParams.get("log") === "true" ? { ...counts, log: entries } : counts))
    }
    if (options.apiKey !== undefined && req.headers["authorization"] !== `Bearer ${options.apiKey}`) {
      setOutcome("unauthorized")
      return send(401, errorBody("invalid api key", "invalid_request_error", "invalid_api_key"))
    }
    if (path === "/v1/models") {
      const models = options.models ?? ["fake-gpt"]
      return send(200, JSON.stringify({ object: "list", data: models.map((id) => ({ id, object: "model", created: 1767225600, owned_by: "fake" })) }))
    }

    let parsed: unknown
    try {
      parsed = raw === "" ? undefined : JSON.parse(raw)
    } catch {
      setOutcome("bad_request")
      return send(400, errorBody("request body is not JSON", "invalid_request_error", "bad_json"))
    }
    if (isChat && (parsed === null || typeof parsed !== "object" || !Array.isArray((parsed as { messages?: unknown }).messages))) {
      setOutcome("bad_request")
      return send(400, errorBody("'messages' must be an array", "invalid_request_error", "bad_request"))
    }

    const header = req.headers[FAULT_HEADER]
    const fault = pickFault(bodyHash, typeof header === "string" ? header : undefined)
    if (fault !== null) setOutcome(fault)

    if (fault === "connection_reset") {
      record.respondedAt = Date.now()
      req.socket.resetAndDestroy()
      return
    }
    const jitter = (options.latencyJitterMs ?? 0) > 0 ? Math.floor(unit(bodyHash, 30) * (options.latencyJitterMs ?? 0)) : 0
    later((options.latencyMs ?? 0) + jitter, () => {
      if (res.destroyed) return
      switch (fault) {
        case "timeout":
          return // the client's timeout (or our close()) ends it
        case "rate_limit": {
          const seconds = options.retryAfterSeconds ?? 1
          const retryAfter = options.retryAfterAsDate === true
            ? new Date(Date.now() + seconds * 1000).toUTCString()
            : String(seconds)
          return send(429, errorBody("rate limit exceeded", "rate_limit_error", 429), { "retry-after": retryAfter })
        }
        case "server_error":
          return send(500, errorBody("the fake server failed on purpose", "server_error", 500))
        case "malformed_json":
          return send(200, `{"id": "chatcmpl-broken", "choices": [{"message": {"content": "unterminated`)
        default: {
          const reply = JSON.stringify(
            isChat
              ? chatReply(parsed as Record<string, unknown>, {
                ...(options.replyVariant !== undefined ? { replyVariant: options.replyVariant } : {}),
                ...(options.flipSentiment !== undefined ? { flipSentiment: options.flipSentiment } : {}),
                ...(path.startsWith("/openai/deployments/") ? { model: decodeURIComponent(path.split("/")[3]!) } : {})
              })
              : echoReply(parsed, {
                ...(options.replyVariant !== undefined ? { replyVariant: options.replyVariant } : {}),
                ...(options.flipSentiment !== undefined ? { flipSentiment: options.flipSentiment } : {})
              })
          )
          if (fault === "truncated_body") {
            record.respondedAt = Date.now()
            res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(reply) })
            res.write(reply.slice(0, Math.floor(reply.length / 2)), () => res.destroy())
            return
          }
          return send(200, reply)
        }
      }
    })
  }

  const statsOf = (): FakeLlmStats => {
    const maxLog = Math.max(1, options.maxLog ?? 100_000)
    return {
      requests: total,
      byOutcome: { ...byOutcome },
      inFlight,
      maxInFlight,
      closedByClient: closedCount,
      log: log.slice(-maxLog).map((r) => ({ ...r }))
    }
  }

  const server = http.createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => handle(req, res, Buffer.concat(chunks).toString("utf8")))
    req.on("error", () => undefined)
  })
  server.keepAliveTimeout = 30_000
  server.on("connection", (s) => {
    sockets.add(s)
    s.on("close", () => sockets.delete(s))
  })

  return new Promise((resolve, reject) => {
    server.once("error", reject)
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => {
      server.off("error", reject)
      const address = server.address() as AddressInfo
      const host = address.family === "IPv6" ? `[${address.address}]` : address.address
      const url = `http://${host}:${address.port}`
      resolve({
        url,
        baseUrl: `${url}/v1`,
        host: address.address,
        port: address.port,
        stats: statsOf,
        resetStats: () => {
          log = []
          total = 0
          closedCount = 0
          byOutcome = {}
          maxInFlight = inFlight
        },
        configure: (patch) => {
          const next = { ...options, ...patch }
          const bad = optionsProblem(next)
          if (bad !== null) throw new Error(`fake-llm: ${bad}`)
          options = next
        },
        failNext: (...faults) => {
          forced.push(...faults)
        },
        close: () =>
          new Promise<void>((done) => {
            for (const t of timers) clearTimeout(t)
            timers.clear()
            server.close(() => done())
            for (const s of sockets) s.destroy()
          })
      })
    })
  })
}
