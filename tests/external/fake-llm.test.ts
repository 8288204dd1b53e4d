/**
 * The fake OpenAI-compatible server over a real loopback socket: replies are a pure
 * function of the request (byte-identical across servers), variants change them, JSON
 * modes answer JSON, faults are chosen deterministically from the seed and the request.
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import { chatReply, type FakeLlmOptions, type FakeLlmServer, sentimentOf, startFakeLlm } from "../../src/dev/fake-llm.js"

const servers: Array<FakeLlmServer> = []
const start = async (options: FakeLlmOptions = {}) => {
  const s = await startFakeLlm(options)
  servers.push(s)
  return s
}
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()))
})

const chat = (content: string, extra: Record<string, unknown> = {}) => ({
  model: "fake-gpt-4",
  messages: [{ role: "system", content: "You classify." }, { role: "user", content }],
  ...extra
})

const post = async (url: string, body: unknown, headers: Record<string, string> = {}) => {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) })
  return { status: res.status, text: await res.text(), headers: res.headers }
}

describe("fake-llm replies", () => {
  it("are byte-identical for the same request, across two servers", async () => {
    const a = await start()
    const b = await start({ latencyMs: 5 })
    const body = chat("I love this product, it is great")
    const r1 = await post(`${a.baseUrl}/chat/completions`, body)
    const r2 = await post(`${a.baseUrl}/chat/completions`, body)
    const r3 = await post(`${b.baseUrl}/chat/completions`, body)
    assert.strictEqual(r1.status, 200)
    assert.strictEqual(r1.text, r2.text)
    assert.strictEqual(r1.text, r3.text)
    const reply = JSON.parse(r1.text)
    assert.strictEqual(reply.object, "chat.completion")
    assert.strictEqual(reply.model, "fake-gpt-4")
    assert.match(reply.choices[0].message.content, /^Sentiment: positive \(confidence 0\.\d\d\)\.$/)
    assert.strictEqual(reply.usage.total_tokens, reply.usage.prompt_tokens + reply.usage.completion_tokens)
    assert.isAbove(reply.usage.prompt_tokens, 0)
  })

  it("derive the sentiment from the prompt's words", () => {
    assert.strictEqual(sentimentOf("terrible, broken, I want a refund"), "negative")
    assert.strictEqual(sentimentOf("Great service, excellent staff"), "positive")
    assert.strictEqual(sentimentOf("The parcel arrived on Tuesday"), "neutral")
    assert.strictEqual(sentimentOf("good but bad"), "neutral")
  })

  it("answer JSON when response_format or the prompt asks for it, filling a JSON schema", async () => {
    const s = await start()
    const byPrompt = JSON.parse((await post(`${s.baseUrl}/chat/completions`, chat("Reply in JSON. Text: awful, the worst"))).text)
    assert.deepStrictEqual(Object.keys(JSON.parse(byPrompt.choices[0].message.content)), ["sentiment", "confidence"])
    assert.strictEqual(JSON.parse(byPrompt.choices[0].message.content).sentiment, "negative")
    const schema = {
      type: "object",
      properties: {
        label: { type: "string" },
        score: { type: "number" },
        tone: { type: "string", enum: ["negative", "neutral", "positive"] },
        urgent: { type: "boolean" }
      }
    }
    const bySchema = JSON.parse(
      (await post(
        `${s.baseUrl}/chat/completions`,
        chat("happy and pleased", { response_format: { type: "json_schema", json_schema: { name: "x", schema } } })
      )).text
    )
    const content = JSON.parse(bySchema.choices[0].message.content)
    assert.strictEqual(content.label, "positive")
    assert.strictEqual(content.tone, "positive")
    assert.strictEqual(content.urgent, true)
    assert.isNumber(content.score)
  })

  it("change with replyVariant and flipSentiment (bytes, then decisions)", async () => {
    const body = chat("a wonderful day")
    const plain = chatReply(body)
    const variant = chatReply(body, { replyVariant: "v2" })
    const flipped = chatReply(body, { flipSentiment: true })
    assert.notStrictEqual(JSON.stringify(plain), JSON.stringify(variant))
    assert.match((flipped as any).choices[0].message.content, /negative/)
    const s = await start()
    const before = (await post(`${s.baseUrl}/chat/completions`, body)).text
    assert.strictEqual(before, JSON.stringify(plain))
    s.configure({ replyVariant: "v2" })
    assert.strictEqual((await post(`${s.baseUrl}/chat/completions`, body)).text, JSON.stringify(variant))
  })

  it("serve /v1/models, /v1/echo, Azure deployments and an API key check", async () => {
    const s = await start({ apiKey: "sk-test", models: ["m1", "m2"] })
    const auth = { authorization: "Bearer sk-test" }
    const models = JSON.parse(await (await fetch(`${s.baseUrl}/models`, { headers: auth })).text())
    assert.deepStrictEqual(models.data.map((m: { id: string }) => m.id), ["m1", "m2"])
    assert.strictEqual((await post(`${s.baseUrl}/chat/completions`, chat("hi"))).status, 401)
    const echo = JSON.parse((await post(`${s.baseUrl}/echo`, { text: "bad service" }, auth)).text)
    assert.deepStrictEqual(echo.echo, { text: "bad service" })
    assert.strictEqual(echo.label, "negative")
    const azure = JSON.parse((await post(`${s.url}/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21`, chat("ok"), auth)).text)
    assert.strictEqual(azure.model, "my-gpt")
    assert.strictEqual((await post(`${s.baseUrl}/nope`, {}, auth)).status, 404)
    assert.strictEqual((await post(`${s.baseUrl}/chat/completions`, { messages: "x" }, auth)).status, 400)
  })
})

describe("fake-llm faults", () => {
  const outcomes = async (s: FakeLlmServer, bodies: ReadonlyArray<unknown>) => {
    for (const b of bodies) await post(`${s.baseUrl}/echo`, b).catch(() => undefined)
    return s.stats().log.map((r) => `${r.bodyHash.slice(0, 8)}:${r.outcome}`).sort()
  }

  it("are the same for the same seed and requests, whatever their order, and follow the rates", async () => {
    const bodies = Array.from({ length: 200 }, (_, i) => ({ i }))
    const options: FakeLlmOptions = { seed: 7, faults: { rate_limit: 0.2, server_error: 0.2 } }
    const a = await start(options)
    const b = await start(options)
    const c = await start({ ...options, seed: 8 })
    const inOrder = await outcomes(a, bodies)
    const reversed = await outcomes(b, [...bodies].reverse())
    const otherSeed = await outcomes(c, bodies)
    assert.deepStrictEqual(inOrder, reversed)
    assert.notDeepEqual(inOrder, otherSeed)
    const counts = a.stats().byOutcome
    // 200 draws at 20%: the seed fixes the counts; they are near 40 each.
    assert.isTrue((counts["rate_limit"] ?? 0) > 20 && (counts["rate_limit"] ?? 0) < 60, JSON.stringify(counts))
    assert.isTrue((counts["server_error"] ?? 0) > 20 && (counts["server_error"] ?? 0) < 60, JSON.stringify(counts))
  })

  it("share faultRate evenly among the six kinds (hung requests given up by the client)", async () => {
    const s = await start({ seed: 1, faultRate: 0.6 })
    await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        fetch(`${s.baseUrl}/echo`, { method: "POST", body: JSON.stringify({ i }), signal: AbortSignal.timeout(2000) })
          .then((r) => r.text())
          .catch(() => undefined)
      )
    )
    const counts = s.stats().byOutcome
    assert.strictEqual(s.stats().requests, 300)
    for (const f of ["rate_limit", "server_error", "timeout", "malformed_json", "connection_reset", "truncated_body"]) {
      // 300 draws at 10% each: near 30; the seed fixes the figures.
      assert.isTrue((counts[f] ?? 0) > 10 && (counts[f] ?? 0) < 55, `${f}: ${JSON.stringify(counts)}`)
    }
    // Every hung request ends when the client gives up (the server sees the close soon after).
    while (s.stats().closedByClient < (counts["timeout"] ?? 0)) await new Promise((r) => setTimeout(r, 10))
    assert.strictEqual(s.stats().closedByClient, counts["timeout"])
  })

  it("refuse rates that cannot work", async () => {
    const err = await startFakeLlm({ faults: { server_error: 0.7, timeout: 0.5 } }).then(() => "started", (e: Error) => e.message)
    assert.strictEqual(err, "fake-llm: the fault rates add up to 1.2, more than 1")
    const s = await start()
    assert.throws(() => s.configure({ faultRate: 2 }), /faultRate: 2 is not between 0 and 1/)
  })

  it("draw afresh when the same request comes again (a retry can succeed)", async () => {
    const s = await start({ faults: { server_error: 0.5 } })
    const statuses: Array<number> = []
    for (let i = 0; i < 30; i++) statuses.push((await post(`${s.baseUrl}/echo`, { same: true })).status)
    assert.include(statuses, 200)
    assert.include(statuses, 500)
  })

  it("send 429 with Retry-After in seconds or as an HTTP date", async () => {
    const s = await start({ retryAfterSeconds: 3 })
    s.failNext("rate_limit")
    const r = await post(`${s.baseUrl}/echo`, {})
    assert.strictEqual(r.status, 429)
    assert.strictEqual(r.headers.get("retry-after"), "3")
    s.configure({ retryAfterAsDate: true })
    s.failNext("rate_limit")
    const d = await post(`${s.baseUrl}/echo`, {})
    assert.isFalse(Number.isNaN(Date.parse(d.headers.get("retry-after") ?? "")))
  })

  it("take a fault from the request header", async () => {
    const s = await start()
    const r = await post(`${s.baseUrl}/echo`, {}, { "x-fake-llm-fault": "server_error" })
    assert.strictEqual(r.status, 500)
    assert.deepStrictEqual(s.stats().byOutcome, { server_error: 1 })
  })
})
