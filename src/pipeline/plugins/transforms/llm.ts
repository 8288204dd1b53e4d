/**
 * The `llm` transform: asks an OpenAI-compatible chat-completions API about each row
 * (OpenAI, OpenRouter, Azure OpenAI, or any server at `base_url`: vLLM, Ollama, LM
 * Studio, the bundled fake server) and adds the reply to the row.
 *
 * Output fields, as ELSPETH names them: `<response_field>` (the reply's text, or the
 * parsed object with `response_format: json`), `<response_field>_usage` (token counts),
 * `<response_field>_model` (the model that answered), `<response_field>_template_hash`
 * and `<response_field>_variables_hash`.
 *
 * The call itself is made by the engine (see `ExternalCallSpec`): live, or answered
 * from a recorded run (`run_mode: replay`), each attempt recorded. The API key goes in
 * a header and is never recorded.
 */
import { Effect, Schema } from "effect"
import { sha256Hex, stableHashUnsafe } from "../../../core/canonical.js"
import { compileJsonSchema, parseJsonReply, schemaErrors } from "../external/reply.js"
import { callFailure, type ExternalCallSpec, pathOf, type PreparedCall } from "../external/spec.js"
import { compileTemplate, TemplateError } from "../external/template.js"
import { Identifier, PositiveInt } from "../options.js"
import type { RowTransformInstance, TransformPlugin } from "../protocol.js"
import { PluginConfigError, putField, TransformResult } from "../protocol.js"
import { copyRow, decodeTransform, hasOwn, TransformCommonFields } from "./common.js"

const PLUGIN = "llm"

const NonEmpty = Schema.String.pipe(Schema.filter((s) => s.trim() !== "" || "expected a non-empty string"), Schema.annotations({ title: "a non-empty string" }))
const Positive = Schema.Number.pipe(Schema.filter((n) => (Number.isFinite(n) && n > 0) || `expected a number > 0, got ${n}`), Schema.annotations({ title: "a number > 0" }))

const LlmOptions = Schema.Struct({
  ...TransformCommonFields,
  provider: Schema.Literal("openai", "openai_compatible", "openrouter", "azure"),
  model: Schema.optional(NonEmpty),
  api_key: Schema.optional(Schema.String),
  base_url: Schema.optional(NonEmpty),
  /** Azure: `https://<resource>.openai.azure.com`, the deployment and the API version. */
  endpoint: Schema.optional(NonEmpty),
  deployment_name: Schema.optional(NonEmpty),
  api_version: Schema.optional(NonEmpty),
  template: NonEmpty,
  system_prompt: Schema.optional(Schema.String),
  temperature: Schema.optional(Schema.Number.pipe(Schema.filter((n) => (n >= 0 && n <= 2) || `expected a number from 0 to 2, got ${n}`))),
  max_tokens: Schema.optional(PositiveInt),
  response_field: Schema.optionalWith(Identifier, { default: () => "llm_response" }),
  response_format: Schema.optionalWith(Schema.Literal("text", "json"), { default: () => "text" as const }),
  /** A JSON Schema the parsed reply must match (`response_format: json`). */
  response_schema: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown })),
  timeout_seconds: Schema.optionalWith(Positive, { default: () => 60 }),
  pool_size: Schema.optional(PositiveInt),
  /** The rate-limit bucket (`rate_limit.services.<name>`); default by provider. */
  service: Schema.optional(Identifier)
})

const DEFAULT_BASE_URL: Record<string, string | undefined> = {
  openai: "https://api.openai.com/v1",
  openrouter: "https://openrouter.ai/api/v1"
}

const DEFAULT_SERVICE: Record<string, string> = {
  openai: "openai",
  openai_compatible: "openai",
  openrouter: "openrouter",
  azure: "azure_openai"
}

const trimSlash = (s: string) => s.replace(/\/+$/, "")

export const llmTransform: TransformPlugin = {
  kind: "transform",
  name: PLUGIN,
  description: "Asks an OpenAI-compatible LLM about each row (openai, openrouter, azure, any base_url); every call recorded.",
  batchAware: false,
  create: (raw) =>
    Effect.gen(function*() {
      const { inputSchema, options, schema } = yield* decodeTransform(PLUGIN, LlmOptions, raw)
      const fail = (key: string, message: string, value?: unknown) =>
        new PluginConfigError({ plugin: PLUGIN, key, message, ...(value === undefined ? {} : { value }) })
      const provider = options.provider
      let url: string
      let model: string
      if (provider === "azure") {
        const endpoint = options.endpoint ?? options.base_url
        if (endpoint === undefined) return yield* fail("endpoint", "required with provider: azure (https://<resource>.openai.azure.com)")
        const deployment = options.deployment_name ?? options.model
        if (deployment === undefined) return yield* fail("deployment_name", "required with provider: azure")
        model = options.model ?? deployment
        url = `${trimSlash(endpoint)}/openai/deployments/${encodeURIComponent(deployment)}/chat/completions?api-version=${
          encodeURIComponent(options.api_version ?? "2024-10-21")
        }`
      } else {
        if (options.model === undefined) return yield* fail("model", "required: the model to ask (e.g. openai/gpt-4o-mini)")
        model = options.model
        const base = options.base_url ?? DEFAULT_BASE_URL[provider]
        if (base === undefined) return yield* fail("base_url", "required with provider: openai_compatible (e.g. http://localhost:8000/v1)")
        url = `${trimSlash(base)}/chat/completions`
      }
      if (options.response_schema !== undefined && options.response_format !== "json") {
        return yield* fail("response_schema", "checks a JSON reply; set response_format: json")
      }
      const validate = options.response_schema === undefined ? undefined : compileJsonSchema(options.response_schema)
      if (typeof validate === "string") return yield* fail("response_schema", `not a valid JSON Schema: ${validate}`)
      let template
      try {
        template = compileTemplate(options.template)
      } catch (e) {
        return yield* fail("template", `not a valid template: ${(e as Error).message}`, options.template)
      }
      const templateHash = sha256Hex(options.template)
      const recordedUrl = pathOf(url)
      const required = options.required_input_fields ?? []
      const headers: Record<string, string> = {}
      if (options.api_key !== undefined && options.api_key !== "") {
        if (provider === "azure") headers["api-key"] = options.api_key
        else headers["authorization"] = `Bearer ${options.api_key}`
      }
      const rf = options.response_field

      const prepare = (row: Record<string, unknown>): PreparedCall => {
        for (const field of required) {
          if (!hasOwn(row, field) || row[field] === null || row[field] === undefined) return { _tag: "Error", reason: { reason: "missing_field", field } }
        }
        let prompt: string
        try {
          prompt = template.render({ row })
        } catch (e) {
          return { _tag: "Error", reason: { reason: "template_error", message: e instanceof TemplateError ? e.message : String(e) } }
        }
        const messages: Array<{ role: string; content: string }> = []
        if (options.system_prompt !== undefined && options.system_prompt !== "") messages.push({ role: "system", content: options.system_prompt })
        messages.push({ role: "user", content: prompt })
        const body: Record<string, unknown> = { model, messages }
        if (options.temperature !== undefined) body.temperature = options.temperature
        if (options.max_tokens !== undefined) body.max_tokens = options.max_tokens
        if (options.response_format === "json") body.response_format = { type: "json_object" }
        return { _tag: "Call", request: { method: "POST", url, headers, body }, recorded: { method: "POST", url: recordedUrl, body } }
      }

      const external: ExternalCallSpec = {
        kind: "llm",
        provider,
        model,
        service: options.service ?? DEFAULT_SERVICE[provider]!,
        timeoutMs: options.timeout_seconds * 1000,
        poolSize: options.pool_size,
        adaptive: true,
        prepare,
        interpret: (row, final) => {
          if (final.errorClass !== null) return { result: TransformResult.error(callFailure(final)) }
          const reply = final.responseJson as { model?: unknown; usage?: unknown; choices?: Array<{ message?: { content?: unknown } }> } | undefined
          const content = reply?.choices?.[0]?.message?.content
          const responseModel = typeof reply?.model === "string" ? reply.model : null
          const usage = reply?.usage ?? null
          if (typeof content !== "string") {
            return {
              result: TransformResult.error({ reason: "malformed_reply", message: "the reply has no choices[0].message.content string" }),
              responseModel,
              usage
            }
          }
          let value: unknown = content
          if (options.response_format === "json") {
            const parsed = parseJsonReply(content)
            if (!parsed.ok) {
              return {
                result: TransformResult.error({ reason: "invalid_json_reply", message: parsed.message, content: content.slice(0, 200) }),
                responseModel,
                usage
              }
            }
            if (validate !== undefined && !validate(parsed.value)) {
              return {
                result: TransformResult.error({ reason: "schema_mismatch", message: schemaErrors(validate), content: content.slice(0, 200) }),
                responseModel,
                usage
              }
            }
            value = parsed.value
          }
          const out = copyRow(row)
          putField(out, rf, value)
          putField(out, `${rf}_usage`, usage)
          putField(out, `${rf}_model`, responseModel)
          putField(out, `${rf}_template_hash`, templateHash)
          putField(out, `${rf}_variables_hash`, stableHashUnsafe(row))
          return { result: TransformResult.success(out), responseModel, usage }
        }
      }
      const instance: RowTransformInstance = {
        _tag: "RowTransform",
        plugin: PLUGIN,
        onError: options.on_error,
        inputSchema,
        outputSchema: schema,
        process: () => {
          throw new Error("the llm transform's calls are made by the engine")
        },
        external
      }
      return instance
    })
}
