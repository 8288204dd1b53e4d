/**
 * The `field_mapper` transform: renames (and optionally selects) fields.
 *
 * Mapping entries apply in order. A source with dots walks nested objects
 * (`meta.source`); a target is a plain key. A found value is written to the target
 * (an existing key keeps its position, a new key is appended); when not
 * `select_only`, a plain (undotted) source key is removed first. So a rename moves
 * the field to the end, and `{a: a}` moves `a` to the end. Two sources mapped to one
 * target are refused at load time: one of the two values would be lost.
 */
import { Effect, Schema } from "effect"
import { joinKey } from "../options.js"
import type { Row, RowTransformInstance, TransformPlugin } from "../protocol.js"
import { PluginConfigError, putField, TransformResult } from "../protocol.js"
import { OBSERVED_SCHEMA } from "../schema.js"
import { decodeTransform, hasOwn, makeInputValidator, TransformCommonFields } from "./common.js"

const PLUGIN = "field_mapper"

const FieldMapperOptions = Schema.Struct({
  ...TransformCommonFields,
  mapping: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.String }), { default: () => ({}) }),
  select_only: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  strict: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  validate_input: Schema.optionalWith(Schema.Boolean, { default: () => false })
})

const isObject = (v: unknown): v is Row => typeof v === "object" && v !== null && !Array.isArray(v)

/** Looks a dot path up through nested objects. */
export const lookupPath = (row: Row, path: string): { found: true; value: unknown } | { found: false } => {
  if (!path.includes(".")) return hasOwn(row, path) ? { found: true, value: row[path] } : { found: false }
  let current: unknown = row
  for (const part of path.split(".")) {
    if (!isObject(current) || !hasOwn(current, part)) return { found: false }
    current = current[part]
  }
  return { found: true, value: current }
}

/** Applies a mapping to a row; returns the output row or the first missing source (strict). */
export const applyMapping = (
  row: Row,
  mapping: ReadonlyArray<readonly [string, string]>,
  selectOnly: boolean,
  strict: boolean
): { ok: true; row: Row } | { ok: false; field: string } => {
  // A Map keeps insertion order for every key (plain objects put integer-like keys first).
  const out = new Map<string, unknown>()
  if (!selectOnly) for (const k of Object.keys(row)) out.set(k, row[k])
  for (const [source, target] of mapping) {
    const hit = lookupPath(row, source)
    if (!hit.found) {
      if (strict) return { ok: false, field: source }
      continue
    }
    if (!selectOnly && !source.includes(".") && out.has(source)) out.delete(source)
    out.set(target, hit.value)
  }
  const result: Record<string, unknown> = {}
  for (const [k, v] of out) putField(result, k, v)
  return { ok: true, row: result }
}

export const fieldMapperTransform: TransformPlugin = {
  kind: "transform",
  name: PLUGIN,
  description: "Renames and selects fields (dot paths reach into nested objects).",
  batchAware: false,
  create: (raw) =>
    Effect.gen(function*() {
      const { inputSchema, options, schema } = yield* decodeTransform(PLUGIN, FieldMapperOptions, raw)
      const check = makeInputValidator(PLUGIN, options.validate_input, schema)
      const mapping = Object.entries(options.mapping)
      const sourceOf = new Map<string, string>()
      for (const [source, target] of mapping) {
        const earlier = sourceOf.get(target)
        if (earlier !== undefined) {
          return yield* new PluginConfigError({
            plugin: PLUGIN,
            key: joinKey("mapping", source),
            value: target,
            message: `sources '${earlier}' and '${source}' both map to target '${target}': ` +
              `the value of one would be lost; map each to its own target`
          })
        }
        sourceOf.set(target, source)
      }
      const instance: RowTransformInstance = {
        _tag: "RowTransform",
        plugin: PLUGIN,
        onError: options.on_error,
        inputSchema,
        outputSchema: OBSERVED_SCHEMA,
        process: (row) => {
          check(row)
          const r = applyMapping(row, mapping, options.select_only, options.strict)
          return r.ok
            ? TransformResult.success(r.row)
            : TransformResult.error({
              reason: "missing_field",
              field: r.field,
              message: `field '${r.field}' not found in the row (strict mapping)`
            })
        }
      }
      return instance
    })
}
