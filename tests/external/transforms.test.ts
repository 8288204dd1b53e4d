/**
 * The `llm` and `http` transforms in-process against the fake server on a loopback
 * port: options and their errors, the sandboxed templates, reply checks, response
 * mapping and error statuses, secrets, settings checks, and Ctrl-C during calls.
 */
import { assert, describe, it } from "@effect/vitest"
import { afterAll, beforeAll, expect } from "vitest"
import { Effect, Either, Fiber } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { type FakeLlmServer, startFakeLlm } from "../../src/dev/fake-llm.js"
import type { ExternalAttempt } from "../../src/pipeline/plugins/external/client.js"
import { compileTemplate } from "../../src/pipeline/plugins/external/template.js"
import type { RowTransformInstance } from "../../src/pipeline/plugins/protocol.js"
import { llmTransform } from "../../src/pipeline/plugins/transforms/llm.js"
import { runPipeline } from "../../src/pipeline/orchestrator/run.js"
import { parseSettings } from "../../src/pipeline/settings.js"
import { redactSecrets } from "../../src/pipeline/secrets.js"
import { assertLandscapeInvariants } from "../support/invariants.js"
import { planOf, query, runSettings, tempDir, TestLandscape, writeFile } from "../support/pipeline.js"

let server: FakeLlmServer
beforeAll(async () => {
  server = await startFakeLlm({ retryAfterSeconds: 0 })
})
afterAll(() => server.close())

const llm = (options: Record<string, unknown>) =>
  llmTransform.create({ provider: "openai_compatible", base_url: "http://127.0.0.1:1/v1", model: "m", template: "{{ row.text }}", schema: { mode: "observed" }, ...options }, { nodeName: "t" })

const external = (i: unknown) => (i as RowTransformInstance).external!

const attempt = (content: unknown): ExternalAttempt => {
  const json = { model: "served-model", usage: { prompt_tokens: 3, completion_tokens: 2 }, choices: [{ message: { content } }] }
  return { attempt: 1, startedAt: 0, latencyMs: 1, status: 200, errorClass: null, errorMessage: null, responseText: JSON.stringify(json), responseJson: json, retryAfterMs: null }
}

describe("templates are sandboxed", () => {
  it("renders row fields and filters", () => {
    const t = compileTemplate("{{ row.text | upper }} {{ row.tags[1] }} {{ row.n | length }} {% for k, v in row.o %}{{ k }}={{ v }}{% endfor %}")
    assert.strictEqual(t.render({ row: { text: "hi", tags: ["a", "b"], n: [1, 2, 3], o: { x: 1 } } }), "HI b 3 x=1")
  })
  it("gives no access to prototypes, constructors, methods or globals", () => {
    const row = { text: "hi", items: [1] }
    assert.strictEqual(compileTemplate("{{ row.constructor }}|{{ row.__proto__ }}|{{ constructor }}|{{ process }}|{{ range }}").render({ row }), "||||")
    for (const escape of [
      "{{ row.constructor.constructor('return process')() }}",
      "{{ row.text.constructor.constructor('return process')().pid }}",
      "{{ row.items.constructor.constructor('return globalThis')() }}",
      "{{ row.text.toUpperCase() }}",
      "{{ cycler(1, 2).next() }}"
    ]) {
      assert.throws(() => compileTemplate(escape).render({ row }), /Unable to call/, escape)
    }
  })
  it.effect("an escape attempt in a prompt template is an error result for on_error, not a call", () =>
    Effect.gen(function*() {
      const spec = external(yield* llm({ template: "{{ row.constructor.constructor('return process')().exit(1) }}" }))
      const prepared = spec.prepare({ text: "x" })
      assert.strictEqual(prepared._tag, "Error")
      if (prepared._tag === "Error") assert.strictEqual(prepared.reason.reason, "template_error")
    }))
})

describe("llm options", () => {
  it.effect.each([
    [{ provider: "anthropic" }, "provider"],
    [{ model: undefined }, "model"],
    [{ provider: "openai_compatible", base_url: undefined }, "base_url"],
    [{ response_schema: { type: "object" } }, "response_schema"],
    [{ response_format: "json", response_schema: { type: "no-such-type" } }, "response_schema"],
    [{ template: "{{ row.text " }, "template"],
    [{ temperature: 3 }, "temperature"],
    [{ pool_size: 0 }, "pool_size"]
  ] as const)("%j is refused naming %s", ([options, key]) =>
    Effect.gen(function*() {
      const r = yield* Effect.either(llm(options as Record<string, unknown>))
      assert.isTrue(Either.isLeft(r))
      if (Either.isLeft(r)) assert.strictEqual(r.left.key, key)
    }))

  it.effect("azure: the deployment URL, the api-key header; the key is not in what is recorded", () =>
    Effect.gen(function*() {
      const spec = external(
        yield* llm({ provider: "azure", base_url: undefined, endpoint: "https://res.openai.azure.com/", deployment_name: "gpt4o", api_key: "secret-1", model: undefined })
      )
      const p = spec.prepare({ text: "hello" })
      assert.strictEqual(p._tag, "Call")
      if (p._tag !== "Call") return
      assert.strictEqual(p.request.url, "https://res.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21")
      assert.strictEqual(p.request.headers["api-key"], "secret-1")
      assert.notInclude(JSON.stringify(p.recorded), "secret-1")
      assert.strictEqual(p.recorded.url, "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21")
      assert.strictEqual(spec.service, "azure_openai")
    }))

  it.effect("a missing required field is an error result; the request carries system prompt, temperature, max_tokens", () =>
    Effect.gen(function*() {
      const spec = external(yield* llm({ required_input_fields: ["text"], system_prompt: "sys", temperature: 0, max_tokens: 5, api_key: "k" }))
      const missing = spec.prepare({ other: 1 })
      assert.deepStrictEqual(missing, { _tag: "Error", reason: { reason: "missing_field", field: "text" } })
      const p = spec.prepare({ text: "hey" })
      if (p._tag !== "Call") return assert.fail("expected a call")
      assert.deepStrictEqual(p.request.body, { model: "m", messages: [{ role: "system", content: "sys" }, { role: "user", content: "hey" }], temperature: 0, max_tokens: 5 })
      assert.strictEqual(p.request.headers.authorization, "Bearer k")
    }))

  it.effect("response_format json: a reply that does not parse, or does not match the schema, is an error with the reason", () =>
    Effect.gen(function*() {
      const spec = external(
        yield* llm({
          response_format: "json",
          response_field: "a",
          response_schema: { type: "object", required: ["label"], properties: { label: { enum: ["x", "y"] } } }
        })
      )
      const bad = spec.interpret({ text: "t" }, attempt("not json"))
      assert.strictEqual(bad.result._tag, "Error")
      if (bad.result._tag === "Error") assert.strictEqual(bad.result.reason.reason, "invalid_json_reply")
      const mismatch = spec.interpret({ text: "t" }, attempt("{\"label\": \"z\"}"))
      if (mismatch.result._tag !== "Error") return assert.fail("expected an error")
      assert.strictEqual(mismatch.result.reason.reason, "schema_mismatch")
      assert.match(String(mismatch.result.reason.message), /label/)
      const ok = spec.interpret({ text: "t" }, attempt("```json\n{\"label\": \"x\"}\n```"))
      if (ok.result._tag !== "Success") return assert.fail("expected success")
      assert.deepStrictEqual(ok.result.row.a, { label: "x" })
      assert.deepStrictEqual(ok.result.row.a_usage, { prompt_tokens: 3, completion_tokens: 2 })
      assert.strictEqual(ok.result.row.a_model, "served-model")
      assert.match(String(ok.result.row.a_template_hash), /^[0-9a-f]{64}$/)
      const failed = spec.interpret({ text: "t" }, { ...attempt(""), status: 500, errorClass: "server_error", errorMessage: "boom", attempt: 3 })
      if (failed.result._tag !== "Error") return assert.fail("expected an error")
      assert.deepStrictEqual(failed.result.reason, { reason: "call_failed", error_class: "server_error", status: 500, message: "boom", attempts: 3 })
    }))
})

describe("settings", () => {
  const base = "source: {plugin: \"null\"}\nsinks: {out: {plugin: json, options: {path: o.json, schema: {mode: observed}}}}\ndefault_sink: out\n"
  it.effect.each([
    ["run_mode: replay\n", "replay_from"],
    ["run_mode: verify\n", "replay_from"],
    ["replay_from: run_x\n", "replay_from"],
    ["rate_limit: {persistence_path: r.db}\n", "rate_limit.persistence_path"],
    ["run_mode: rerun\n", "run_mode"]
  ])("%s is refused naming %s", ([extra, key]) =>
    Effect.gen(function*() {
      const r = yield* Effect.either(parseSettings("s.yaml", base + extra, {}))
      assert.isTrue(Either.isLeft(r))
      if (Either.isLeft(r)) assert.strictEqual(r.left.key, key)
    }))

  it("secrets are redacted from what is recorded: api keys and every header value", () => {
    const redacted = redactSecrets({ transforms: [{ options: { api_key: "sk", headers: { Authorization: "Bearer x", "X-Other": "y" }, model: "m" } }] })
    assert.deepStrictEqual(redacted, { transforms: [{ options: { api_key: "[redacted]", headers: { Authorization: "[redacted]", "X-Other": "[redacted]" }, model: "m" } }] })
  })
})

describe("the http transform against the fake server's echo endpoint", () => {
  const pipeline = (dir: string, options: string) => `
source:
  plugin: csv
  options: {path: ${join(dir, "in.csv")}, schema: {mode: fixed, fields: ["id: int", "text: str"]}, on_validation_failure: discard}
transforms:
  - plugin: http
    options:
${options}
      schema: {mode: observed}
      on_error: failed
sinks:
  out: {plugin: json, options: {path: ${join(dir, "out.jsonl")}, format: jsonl, schema: {mode: observed}}}
  failed: {plugin: json, options: {path: ${join(dir, "failed.jsonl")}, format: jsonl, schema: {mode: observed}}}
default_sink: out
payload_store: {base_path: ${join(dir, "payloads")}}
retry: {max_attempts: 2, initial_delay_seconds: 0.01}
`
  it.live("maps reply fields into the row; sends headers without recording them", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      writeFile(dir, "in.csv", "id,text\n1,a great day\n2,a terrible day\n")
      const r = yield* runSettings(pipeline(dir, `      url: "${server.url}/v1/echo?id={{ row.id }}"
      headers: {X-Api-Token: "tok-secret-99"}
      body: {text: "{{ row.text }}", id: "{{ row.id }}"}
      response_mapping: {label: label, echoed: echo.text}`))
      assert.isTrue(Either.isRight(r), Either.isLeft(r) ? r.left.message : "")
      const rows = readFileSync(join(dir, "out.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
      assert.deepStrictEqual(rows.map((x) => [x.id, x.label, x.echoed]), [[1, "positive", "a great day"], [2, "negative", "a terrible day"]])
      const calls = yield* query<{ call_type: string; http_status: number; provider: string }>(`SELECT call_type, http_status, provider FROM calls`)
      assert.deepStrictEqual(calls.map((c) => [c.call_type, c.http_status, c.provider]), [["http", 200, "http"], ["http", 200, "http"]])
      const everything = JSON.stringify(yield* query(`SELECT * FROM runs`)) + JSON.stringify(yield* query(`SELECT * FROM nodes`))
      assert.notInclude(everything, "tok-secret-99")
      const runId = (yield* query<{ run_id: string }>(`SELECT run_id FROM runs`))[0]!.run_id
      yield* assertLandscapeInvariants(runId)
    }).pipe(Effect.provide(TestLandscape)))

  it.live("a status listed in error_statuses, and a missing reply field, go to on_error with the reason", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      writeFile(dir, "in.csv", "id,text\n1,x\n")
      const r = yield* runSettings(pipeline(dir, `      url: "${server.url}/v1/echo"
      body: {text: "{{ row.text }}"}
      error_statuses: [200]`))
      assert.isTrue(Either.isRight(r))
      const errors = yield* query<{ error_details_json: string }>(`SELECT error_details_json FROM transform_errors`)
      // The client counts a listed status as an error whatever its range (client_error for a 2xx).
      assert.deepInclude(JSON.parse(errors[0]!.error_details_json), { reason: "call_failed", error_class: "client_error", status: 200 })
      const dir2 = tempDir()
      writeFile(dir2, "in.csv", "id,text\n1,x\n")
      yield* runSettings(pipeline(dir2, `      url: "${server.url}/v1/echo"
      body: {text: "{{ row.text }}"}
      response_mapping: {score: no.such.path}`))
      const failed = readFileSync(join(dir2, "failed.jsonl"), "utf8").trim().split("\n")
      assert.strictEqual(failed.length, 1)
      const reasons = (yield* query<{ error_details_json: string }>(`SELECT error_details_json FROM transform_errors`)).map((e) => JSON.parse(e.error_details_json).reason)
      assert.include(reasons, "missing_response_field")
    }).pipe(Effect.provide(TestLandscape)))
})

describe("Ctrl-C during pooled calls", () => {
  it.live("cancels the requests in flight and records them interrupted; every row ends with one outcome", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      writeFile(dir, "in.csv", `id,text\n${Array.from({ length: 6 }, (_, i) => `${i},text ${i}`).join("\n")}\n`)
      server.configure({ latencyMs: 30_000, faults: {} })
      server.resetStats()
      const plan = yield* planOf(`
source: {plugin: csv, options: {path: ${join(dir, "in.csv")}, schema: {mode: fixed, fields: ["id: int", "text: str"]}, on_validation_failure: discard}}
transforms:
  - plugin: llm
    options: {provider: openai_compatible, base_url: "${server.baseUrl}", model: m, template: "{{ row.text }}", pool_size: 3, timeout_seconds: 60, schema: {mode: observed}}
sinks:
  out: {plugin: json, options: {path: ${join(dir, "out.jsonl")}, format: jsonl, schema: {mode: observed}}}
default_sink: out
checkpoint: {enabled: false}
payload_store: {base_path: ${join(dir, "payloads")}}
`)
      const fiber = yield* Effect.fork(runPipeline(plan))
      while (server.stats().inFlight < 3) yield* Effect.sleep(5)
      yield* Fiber.interrupt(fiber)
      server.configure({ latencyMs: 0 })
      const runs = yield* query<{ run_id: string; status: string }>(`SELECT run_id, status FROM runs`)
      assert.strictEqual(runs[0]!.status, "interrupted")
      const interrupted = yield* query<{ n: number }>(`SELECT COUNT(*) AS n FROM calls WHERE error_class = 'interrupted'`)
      assert.strictEqual(interrupted[0]!.n, 3)
      yield* assertLandscapeInvariants(runs[0]!.run_id)
      // The server saw its connections closed by the client: the requests were aborted.
      let closed = 0
      for (let i = 0; i < 100 && closed < 3; i++) {
        closed = server.stats().closedByClient
        if (closed < 3) yield* Effect.sleep(10)
      }
      expect(closed).toBe(3)
    }).pipe(Effect.provide(TestLandscape)))
})

describe("an llm call on a fork branch", () => {
  it.live.each(["require_all", "first"] as const)("coalesce %s: one merged row per source row, every token one terminal outcome", (policy) =>
    Effect.gen(function*() {
      const dir = tempDir()
      writeFile(dir, "in.csv", `id,text\n${Array.from({ length: 6 }, (_, i) => `${i},great ${i}`).join("\n")}\n`)
      server.configure({ latencyMs: 5, faults: {} })
      const r = yield* runSettings(`
source:
  plugin: csv
  on_success: rows
  options: {path: ${join(dir, "in.csv")}, schema: {mode: fixed, fields: ["id: int", "text: str"]}, on_validation_failure: discard}
gates:
  - name: split
    input: rows
    condition: "row['id'] >= 0"
    routes: {"true": fork, "false": out}
    fork_to: [ask, plain]
transforms:
  - name: asker
    plugin: llm
    input: ask
    on_success: asked
    options: {provider: openai_compatible, base_url: "${server.baseUrl}", model: m, template: "{{ row.text }}", response_field: a, pool_size: 3, schema: {mode: observed}}
coalesce:
  - name: join
    branches: {ask: asked, plain: plain}
    policy: ${policy}
    merge: union
    on_success: out
sinks:
  out: {plugin: json, options: {path: ${join(dir, "out.jsonl")}, format: jsonl, schema: {mode: observed}}}
payload_store: {base_path: ${join(dir, "payloads")}}
`)
      assert.isTrue(Either.isRight(r), Either.isLeft(r) ? r.left.message : "")
      const rows = readFileSync(join(dir, "out.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
      assert.deepStrictEqual(rows.map((x) => x.id), [0, 1, 2, 3, 4, 5])
      if (policy === "require_all") for (const x of rows) assert.match(String(x.a), /Sentiment: positive/)
      const runId = (yield* query<{ run_id: string }>(`SELECT run_id FROM runs`))[0]!.run_id
      yield* assertLandscapeInvariants(runId)
    }).pipe(Effect.provide(TestLandscape)))
})
