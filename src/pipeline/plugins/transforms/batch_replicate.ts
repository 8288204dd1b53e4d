/**
 * The `batch_replicate` aggregation plugin: emits each row of a batch several times.
 *
 * The number of copies comes from `copies_field` (an integer ≥ 1; a boolean counts as
 * 0/1) or `default_copies` when the field is absent; anything else stops the run.
 * Each copy gets `copy_index` (0-based) unless `include_copy_index` is false.
 */
import { Effect, Schema } from "effect"
import { PositiveInt } from "../options.js"
import type { BatchTransformInstance, Row, TransformPlugin } from "../protocol.js"
import { PluginRunError, setField } from "../protocol.js"
import { OBSERVED_SCHEMA } from "../schema.js"
import { describeValue, copyRow, decodeTransform, hasOwn, TransformCommonFields } from "./common.js"

const PLUGIN = "batch_replicate"

const BatchReplicateOptions = Schema.Struct({
  ...TransformCommonFields,
  copies_field: Schema.optionalWith(Schema.String, { default: () => "copies" }),
  default_copies: Schema.optionalWith(PositiveInt, { default: () => 1 }),
  include_copy_index: Schema.optionalWith(Schema.Boolean, { default: () => true })
})

export const batchReplicateTransform: TransformPlugin = {
  kind: "transform",
  name: PLUGIN,
  description: "Replicates each row of a batch a number of times.",
  batchAware: true,
  create: (raw) =>
    Effect.gen(function*() {
      const { inputSchema, options } = yield* decodeTransform(PLUGIN, BatchReplicateOptions, raw)
      const field = options.copies_field
      const copiesOf = (row: Row, index: number): number => {
        if (!hasOwn(row, field)) return options.default_copies
        const v = row[field]
        const n = typeof v === "boolean" ? (v ? 1 : 0) : v
        if (typeof n !== "number" || !Number.isInteger(n)) {
          throw new PluginRunError({
            plugin: PLUGIN,
            message: `row ${index} of the batch: field '${field}' must be an integer, got ${describeValue(v)}`
          })
        }
        if (n < 1) {
          throw new PluginRunError({
            plugin: PLUGIN,
            message: `row ${index} of the batch: field '${field}' must be at least 1, got ${describeValue(v)}`
          })
        }
        return n
      }
      const instance: BatchTransformInstance = {
        _tag: "BatchTransform",
        plugin: PLUGIN,
        onError: options.on_error,
        inputSchema,
        outputSchema: OBSERVED_SCHEMA,
        processBatch: (rows) => {
          const out: Array<Row> = []
          const origins: Array<number> = []
          rows.forEach((row, index) => {
            const copies = copiesOf(row, index)
            for (let c = 0; c < copies; c++) {
              const copy = copyRow(row)
              if (options.include_copy_index) setField(copy, "copy_index", c)
              out.push(copy)
              origins.push(index)
            }
          })
          return { _tag: "Success", rows: out, origins }
        }
      }
      return instance
    })
}
