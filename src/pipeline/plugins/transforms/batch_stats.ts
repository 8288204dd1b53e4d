/**
 * The `batch_stats` aggregation plugin: one summary row per batch.
 *
 * Output keys in order: `count`, `sum`, `batch_size`, `mean` (with `compute_mean`),
 * then the `group_by` value of the first row. `sum` adds the values left to right as
 * floats; JS numbers make no int/float distinction, so an integral sum is a plain
 * number like any other. A row without a numeric `value_field` stops the run.
 */
import { Effect, Schema } from "effect"
import type { BatchTransformInstance, Row, TransformPlugin } from "../protocol.js"
import { PluginRunError, setField } from "../protocol.js"
import { OBSERVED_SCHEMA } from "../schema.js"
import { describeValue, decodeTransform, hasOwn, TransformCommonFields } from "./common.js"

const PLUGIN = "batch_stats"

const BatchStatsOptions = Schema.Struct({
  ...TransformCommonFields,
  value_field: Schema.String,
  group_by: Schema.optional(Schema.String),
  compute_mean: Schema.optionalWith(Schema.Boolean, { default: () => true })
})

export const batchStatsTransform: TransformPlugin = {
  kind: "transform",
  name: PLUGIN,
  description: "Summarises a batch: count, sum, batch_size, mean, group.",
  batchAware: true,
  create: (raw) =>
    Effect.gen(function*() {
      const { inputSchema, options } = yield* decodeTransform(PLUGIN, BatchStatsOptions, raw)
      const field = options.value_field
      const instance: BatchTransformInstance = {
        _tag: "BatchTransform",
        plugin: PLUGIN,
        onError: options.on_error,
        inputSchema,
        outputSchema: OBSERVED_SCHEMA,
        processBatch: (rows) => {
          let sum = 0
          rows.forEach((row, index) => {
            if (!hasOwn(row, field)) {
              throw new PluginRunError({ plugin: PLUGIN, message: `row ${index} of the batch has no field '${field}'` })
            }
            const v = row[field]
            if (typeof v === "boolean") sum += v ? 1 : 0
            else if (typeof v === "number") sum += v
            else {
              throw new PluginRunError({
                plugin: PLUGIN,
                message: `row ${index} of the batch: field '${field}' must be a number, got ${describeValue(v)}`
              })
            }
          })
          const count = rows.length
          const out: Record<string, unknown> = { count, sum, batch_size: count }
          if (options.compute_mean) out["mean"] = count === 0 ? null : sum / count
          const first: Row | undefined = rows[0]
          const group = options.group_by
          if (group !== undefined && first !== undefined && hasOwn(first, group)) setField(out, group, first[group])
          return { _tag: "Success", rows: [out] }
        }
      }
      return instance
    })
}
