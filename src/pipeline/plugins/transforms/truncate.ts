/**
 * The `truncate` transform: shortens string fields to a maximum length, counted in
 * Unicode code points. A longer value becomes its first `max - len(suffix)` code
 * points followed by the suffix. A configured field holding anything but a string is
 * an error result (`{reason: "type_mismatch", field, expected: "str", actual}`) for
 * `on_error`, as in ELSPETH: passing it on unchecked would let an over-long value through.
 */
import { Effect, Schema } from "effect"
import { NonNegativeInt } from "../options.js"
import type { RowTransformInstance, TransformPlugin } from "../protocol.js"
import { PluginConfigError, setField, TransformResult } from "../protocol.js"
import { copyRow, decodeTransform, hasOwn, pyTypeName, TransformCommonFields } from "./common.js"

const PLUGIN = "truncate"

const TruncateOptions = Schema.Struct({
  ...TransformCommonFields,
  fields: Schema.optionalWith(Schema.Record({ key: Schema.String, value: NonNegativeInt }), { default: () => ({}) }),
  suffix: Schema.optionalWith(Schema.String, { default: () => "" }),
  strict: Schema.optionalWith(Schema.Boolean, { default: () => false })
})

/** Truncates `value` to `max` code points, ending with `suffix` when cut. */
export const truncateText = (value: string, max: number, suffix: string): string => {
  // A string has no more code points than UTF-16 units: a short one needs no counting.
  if (value.length <= max) return value
  const cps = Array.from(value)
  if (cps.length <= max) return value
  const suffixLength = Array.from(suffix).length
  return cps.slice(0, max - suffixLength).join("") + suffix
}

export const truncateTransform: TransformPlugin = {
  kind: "transform",
  name: PLUGIN,
  description: "Truncates string fields to a maximum length (in code points).",
  batchAware: false,
  create: (raw) =>
    Effect.gen(function*() {
      const { inputSchema, options, schema } = yield* decodeTransform(PLUGIN, TruncateOptions, raw)
      const suffixLength = Array.from(options.suffix).length
      const fields = Object.entries(options.fields)
      for (const [field, max] of fields) {
        if (max < 1) {
          return yield* new PluginConfigError({
            plugin: PLUGIN,
            key: `fields.${field}`,
            value: max,
            message: `the max length of '${field}' must be at least 1, got ${max}`
          })
        }
        if (suffixLength >= max) {
          return yield* new PluginConfigError({
            plugin: PLUGIN,
            key: `fields.${field}`,
            value: max,
            message: `max length ${max} for '${field}' leaves no room for the suffix ${JSON.stringify(options.suffix)} ` +
              `(${suffixLength} code point${suffixLength === 1 ? "" : "s"}): give a max length above ${suffixLength} or a shorter suffix`
          })
        }
      }
      const instance: RowTransformInstance = {
        _tag: "RowTransform",
        plugin: PLUGIN,
        onError: options.on_error,
        inputSchema,
        outputSchema: schema,
        process: (row) => {
          const out = copyRow(row)
          for (const [field, max] of fields) {
            if (!hasOwn(row, field)) {
              if (options.strict) return TransformResult.error({ reason: "missing_field", field })
              continue
            }
            const value = row[field]
            if (typeof value !== "string") {
              return TransformResult.error({ reason: "type_mismatch", field, expected: "str", actual: pyTypeName(value) })
            }
            const cut = truncateText(value, max, options.suffix)
            if (cut !== value) setField(out, field, cut)
          }
          return TransformResult.success(out)
        }
      }
      return instance
    })
}
