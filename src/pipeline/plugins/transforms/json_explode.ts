/**
 * The `json_explode` transform: one row per element of a list field (deaggregation).
 *
 * Children are the row without the list field plus `output_field` (the element) and,
 * with `include_index`, `item_index` (0-based); a key already present keeps its
 * position. An empty list has nothing to explode: it is an error result
 * (`{reason: "invalid_input", field, error: "empty array"}`) that goes to `on_error`
 * (without one the run fails), as in ELSPETH. A missing or non-list field stops the
 * run: the pipeline's data is not what the settings say.
 */
import { Effect, Schema } from "effect"
import { decodeOptions, Destination } from "../options.js"
import type { Row, RowTransformInstance, TransformPlugin } from "../protocol.js"
import { PluginConfigError, PluginRunError, setField, TransformResult } from "../protocol.js"
import { OBSERVED_SCHEMA, parseSchemaConfig } from "../schema.js"
import { hasOwn } from "./common.js"

const PLUGIN = "json_explode"

const NonEmptyName = Schema.String.pipe(Schema.filter((s) => s !== "" || "expected a field name, got an empty string"))

const JsonExplodeOptions = Schema.Struct({
  schema: Schema.Unknown,
  on_error: Schema.optional(Destination),
  array_field: NonEmptyName,
  output_field: Schema.optionalWith(NonEmptyName, { default: () => "item" }),
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
      const options = yield* decodeOptions(PLUGIN, JsonExplodeOptions, raw)
      const schema = yield* parseSchemaConfig(PLUGIN, options.schema)
      const { array_field: arrayField, include_index: withIndex, output_field: outputField } = options
      if (outputField === arrayField) {
        return yield* new PluginConfigError({
          plugin: PLUGIN,
          key: "output_field",
          value: outputField,
          message: `output_field and array_field must differ, both are '${outputField}'`
        })
      }
      const child = (base: Row, element: unknown, index: number): Row => {
        const out: Record<string, unknown> = { ...base }
        setField(out, outputField, element)
        if (withIndex) setField(out, "item_index", index)
        return out
      }
      const instance: RowTransformInstance = {
        _tag: "RowTransform",
        plugin: PLUGIN,
        onError: options.on_error,
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
          if (list.length === 0) {
            return TransformResult.error({ reason: "invalid_input", field: arrayField, error: "empty array" })
          }
          const base = Object.fromEntries(Object.keys(row).filter((k) => k !== arrayField).map((k) => [k, row[k]]))
          return TransformResult.expand(list.map((element: unknown, i) => child(base, element, i)))
        }
      }
      return instance
    })
}
