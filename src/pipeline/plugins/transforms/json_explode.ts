/**
 * The `json_explode` transform: one row per element of a list field (deaggregation).
 *
 * Children are the row without the list field plus `output_field` (the element) and,
 * with `include_index`, `item_index` (0-based); a key already present keeps its
 * position. An empty list gives one child with nulls. A missing or non-list field
 * stops the run: there is no `on_error` for this transform.
 */
import { Effect, Schema } from "effect"
import { decodeOptions } from "../options.js"
import type { Row, RowTransformInstance, TransformPlugin } from "../protocol.js"
import { PluginConfigError, PluginRunError, setField, TransformResult } from "../protocol.js"
import { OBSERVED_SCHEMA, parseSchemaConfig } from "../schema.js"
import { hasOwn } from "./common.js"

const PLUGIN = "json_explode"

const JsonExplodeOptions = Schema.Struct({
  schema: Schema.Unknown,
  array_field: Schema.String,
  output_field: Schema.optionalWith(Schema.String, { default: () => "item" }),
  include_index: Schema.optionalWith(Schema.Boolean, { default: () => true })
})

const describe = (v: unknown): string =>
  v === null ? "null" : Array.isArray(v) ? "a list" : typeof v === "object" ? "an object" : typeof v

export const jsonExplodeTransform: TransformPlugin = {
  kind: "transform",
  name: PLUGIN,
  description: "Explodes a list field into one row per element.",
  batchAware: false,
  create: (raw) =>
    Effect.gen(function*() {
      if (typeof raw === "object" && raw !== null && hasOwn(raw, "on_error")) {
        return yield* new PluginConfigError({
          plugin: PLUGIN,
          key: "on_error",
          value: (raw as Row)["on_error"],
          message: "json_explode has no on_error: a missing or non-list field always stops the run"
        })
      }
      const options = yield* decodeOptions(PLUGIN, JsonExplodeOptions, raw)
      const schema = yield* parseSchemaConfig(PLUGIN, options.schema)
      const { array_field: arrayField, include_index: withIndex, output_field: outputField } = options
      const child = (base: Row, element: unknown, index: number | null): Row => {
        const out: Record<string, unknown> = { ...base }
        setField(out, outputField, element)
        if (withIndex) setField(out, "item_index", index)
        return out
      }
      const instance: RowTransformInstance = {
        _tag: "RowTransform",
        plugin: PLUGIN,
        onError: undefined,
        inputSchema: schema,
        outputSchema: OBSERVED_SCHEMA,
        process: (row) => {
          if (!hasOwn(row, arrayField)) {
            throw new PluginRunError({ plugin: PLUGIN, message: `field '${arrayField}' is missing from the row` })
          }
          const list = row[arrayField]
          if (!Array.isArray(list)) {
            throw new PluginRunError({
              plugin: PLUGIN,
              message: `field '${arrayField}' must be a list, got ${describe(list)}`
            })
          }
          const base = Object.fromEntries(Object.keys(row).filter((k) => k !== arrayField).map((k) => [k, row[k]]))
          if (list.length === 0) return TransformResult.expand([child(base, null, null)])
          return TransformResult.expand(list.map((element: unknown, i) => child(base, element, i)))
        }
      }
      return instance
    })
}
