/**
 * The `http` transform: one JSON-over-HTTP call per row. The URL is a template, the
 * body a template (a string rendering JSON, or a mapping/list whose strings are
 * templates), headers come from the settings (`${ENV}` for keys: they are sent, never
 * recorded), and `response_mapping` copies values of the JSON reply into fields
 * (`{score: "result.score"}`); without it the whole reply goes to `response_field`.
 *
 * A status of 400 or more is an error, and so is any status listed in `error_statuses`
 * (`[204]`, say, for an API that answers "nothing found" that way); a failed call goes
 * to `on_error` with its error class, status and attempts.
 */
import { Effect, Schema } from "effect"
import { valueAtPath } from "../external/reply.js"
import { callFailure, type ExternalCallSpec, pathOf, type PreparedCall } from "../external/spec.js"
import { type CompiledTemplate, compileTemplate, TemplateError } from "../external/template.js"
import { Identifier, PositiveInt } from "../options.js"
import type { Row, RowTransformInstance, TransformPlugin } from "../protocol.js"
import { PluginConfigError, putField, TransformResult } from "../protocol.js"
import { copyRow, decodeTransform, hasOwn, TransformCommonFields } from "./common.js"

const PLUGIN = "http"

const Status = Schema.Number.pipe(
  Schema.filter((n) => (Number.isInteger(n) && n >= 100 && n <= 599) || `expected an HTTP status (100-599), got ${n}`),
  Schema.annotations({ title: "an HTTP status" })
)

const HttpOptions = Schema.Struct({
  ...TransformCommonFields,
  method: Schema.optionalWith(Schema.Literal("GET", "POST", "PUT", "PATCH", "DELETE"), { default: () => "POST" as const }),
  url: Schema.String.pipe(Schema.filter((s) => s.trim() !== "" || "expected a URL template")),
  headers: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.String }), { default: () => ({}) }),
  body: Schema.optional(Schema.Unknown),
  response_field: Schema.optionalWith(Identifier, { default: () => "http_response" }),
  response_mapping: Schema.optional(Schema.Record({ key: Identifier, value: Schema.String })),
  error_statuses: Schema.optionalWith(Schema.Array(Status), { default: () => [] }),
  timeout_seconds: Schema.optionalWith(Schema.Number.pipe(Schema.filter((n) => n > 0 || `expected a number > 0, got ${n}`)), { default: () => 30 }),
  pool_size: Schema.optional(PositiveInt),
  service: Schema.optional(Identifier)
})

/** A body template: strings are templates, everything else is kept. */
type BodyTemplate =
  | { readonly _tag: "Text"; readonly template: CompiledTemplate }
  | { readonly _tag: "Value"; readonly value: unknown; readonly templates: Map<string, CompiledTemplate> }

const compileBody = (body: unknown): BodyTemplate | undefined => {
  if (body === undefined || body === null) return undefined
  if (typeof body === "string") return { _tag: "Text", template: compileTemplate(body) }
  const templates = new Map<string, CompiledTemplate>()
  const walk = (v: unknown) => {
    if (typeof v === "string") {
      if (!templates.has(v)) templates.set(v, compileTemplate(v))
    } else if (Array.isArray(v)) v.forEach(walk)
    else if (v !== null && typeof v === "object") Object.values(v).forEach(walk)
  }
  walk(body)
  return { _tag: "Value", value: body, templates }
}

const renderBody = (body: BodyTemplate, context: Record<string, unknown>): unknown => {
  if (body._tag === "Text") {
    const text = body.template.render(context)
    try {
      return JSON.parse(text)
    } catch (e) {
      throw new TemplateError(`the body template did not render JSON: ${(e as Error).message}`)
    }
  }
  const render = (v: unknown): unknown => {
    if (typeof v === "string") return body.templates.get(v)!.render(context)
    if (Array.isArray(v)) return v.map(render)
    if (v !== null && typeof v === "object") {
      const out: Record<string, unknown> = {}
      for (const [k, x] of Object.entries(v)) putField(out, k, render(x))
      return out
    }
    return v
  }
  return render(body.value)
}

const serviceOf = (url: string): string => {
  const m = /^[a-z]+:\/\/([^/:?#{]+)/i.exec(url)
  return m === null ? "http" : m[1]!.replace(/[^A-Za-z0-9_]/g, "_")
}

export const httpTransform: TransformPlugin = {
  kind: "transform",
  name: PLUGIN,
  description: "Calls a JSON-over-HTTP API for each row (url/body templates, response mapping); every call recorded.",
  batchAware: false,
  create: (raw) =>
    Effect.gen(function*() {
      const { inputSchema, options, schema } = yield* decodeTransform(PLUGIN, HttpOptions, raw)
      const fail = (key: string, message: string) => new PluginConfigError({ plugin: PLUGIN, key, message })
      let url: CompiledTemplate
      let body: BodyTemplate | undefined
      try {
        url = compileTemplate(options.url)
      } catch (e) {
        return yield* fail("url", `not a valid template: ${(e as Error).message}`)
      }
      try {
        body = compileBody(options.body)
      } catch (e) {
        return yield* fail("body", `not a valid template: ${(e as Error).message}`)
      }
      if (body !== undefined && (options.method === "GET" || options.method === "DELETE")) {
        return yield* fail("body", `a ${options.method} request has no body`)
      }
      const required = options.required_input_fields ?? []
      const headers = { ...options.headers }
      const errorStatuses = new Set(options.error_statuses)

      const prepare = (row: Record<string, unknown>): PreparedCall => {
        for (const field of required) {
          if (!hasOwn(row, field) || row[field] === null || row[field] === undefined) return { _tag: "Error", reason: { reason: "missing_field", field } }
        }
        try {
          const target = url.render({ row }).trim()
          if (!/^https?:\/\//i.test(target)) return { _tag: "Error", reason: { reason: "invalid_url", url: target } }
          const rendered = body === undefined ? undefined : renderBody(body, { row })
          return {
            _tag: "Call",
            request: { method: options.method, url: target, headers, ...(rendered === undefined ? {} : { body: rendered }) },
            recorded: { method: options.method, url: pathOf(target), body: rendered ?? null }
          }
        } catch (e) {
          return { _tag: "Error", reason: { reason: "template_error", message: e instanceof Error ? e.message : String(e) } }
        }
      }

      const external: ExternalCallSpec = {
        kind: "http",
        provider: "http",
        model: null,
        service: options.service ?? serviceOf(options.url),
        timeoutMs: options.timeout_seconds * 1000,
        poolSize: options.pool_size,
        adaptive: false,
        errorStatuses: options.error_statuses,
        prepare,
        interpret: (row, final) => {
          if (final.errorClass !== null) return { result: TransformResult.error(callFailure(final)) }
          if (final.status !== null && errorStatuses.has(final.status)) {
            return { result: TransformResult.error({ reason: "error_status", status: final.status, attempts: final.attempt }) }
          }
          const reply = final.responseJson === undefined ? final.responseText : final.responseJson
          const out = copyRow(row)
          if (options.response_mapping === undefined) {
            putField(out, options.response_field, reply ?? null)
          } else {
            for (const [field, path] of Object.entries(options.response_mapping)) {
              const value = valueAtPath(reply, path)
              if (value === undefined) return { result: TransformResult.error({ reason: "missing_response_field", field, path }) }
              putField(out, field, value)
            }
          }
          return { result: TransformResult.success(out as Row) }
        }
      }
      const instance: RowTransformInstance = {
        _tag: "RowTransform",
        plugin: PLUGIN,
        onError: options.on_error,
        inputSchema,
        outputSchema: schema,
        process: () => {
          throw new Error("the http transform's calls are made by the engine")
        },
        external
      }
      return instance
    })
}
