/**
 * The `batch_stats` aggregation plugin: one summary row per batch.
 *
 * Output keys in order: `count`, `sum`, `batch_size`, `mean` (with `compute_mean`),
 * then the `group_by` value. `sum` adds the values left to right as floats; JS numbers
 * make no int/float distinction, so an integral sum is a plain number like any other.
 *
 * It fails closed, as ELSPETH does: a row without a numeric `value_field` (a boolean is
 * not a number), or — with `group_by` — a row without that field or a batch whose rows
 * do not all share one value of it, stops the run, since a summary labelled with one
 * group's value over several groups' rows would be wrong data. A `group_by` that names
 * one of the summary's own keys is refused at load time. A sum too large for a float
 * is an error result for the batch.
 */
import { Effect, Schema } from "effect"
import type { BatchTransformInstance, TransformPlugin } from "../protocol.js"
import { PluginConfigError, PluginRunError, setField } from "../protocol.js"
import { OBSERVED_SCHEMA } from "../schema.js"
import { decodeTransform, describeValue, hasOwn, pyEquals, TransformCommonFields } from "./common.js"

const PLUGIN = "batch_stats"

const NonEmptyName = Schema.String.pipe(Schema.filter((s) => s !== "" || "expected a field name, got an empty string"))

const BatchStatsOptions = Schema.Struct({
  ...TransformCommonFields,
  value_field: NonEmptyName,
  group_by: Schema.optional(NonEmptyName),
  compute_mean: Schema.optionalWith(Schema.Boolean, { default: () => true })
})

/** Keys ELSPETH's summary can hold besides the group (the last two only with non-finite values). */
const summaryKeys = (computeMean: boolean): ReadonlyArray<string> => [
  "batch_size",
  "count",
  ...(computeMean ? ["mean"] : []),
  "skipped_non_finite",
  "skipped_non_finite_indices",
  "sum"
]

export const batchStatsTransform: TransformPlugin = {
  kind: "transform",
  name: PLUGIN,
  description: "Summarises a batch: count, sum, batch_size, mean, group.",
  batchAware: true,
  create: (raw) =>
    Effect.gen(function*() {
      const { inputSchema, options } = yield* decodeTransform(PLUGIN, BatchStatsOptions, raw)
      const field = options.value_field
      const group = options.group_by
      const reserved = summaryKeys(options.compute_mean)
      if (group !== undefined && reserved.includes(group)) {
        return yield* new PluginConfigError({
          plugin: PLUGIN,
          key: "group_by",
          value: group,
          message: `group_by field '${group}' collides with a key of the summary row; choose a field that is not one of: ${reserved.join(", ")}`
        })
      }
      const fail = (message: string): never => {
        throw new PluginRunError({ plugin: PLUGIN, message })
      }
      const instance: BatchTransformInstance = {
        _tag: "BatchTransform",
        plugin: PLUGIN,
        onError: options.on_error,
        inputSchema,
        outputSchema: OBSERVED_SCHEMA,
        processBatch: (rows) => {
          if (rows.length === 0) return { _tag: "Error", reason: { reason: "empty_batch" } }
          let sum = 0
          rows.forEach((row, index) => {
            if (!hasOwn(row, field)) fail(`row ${index} of the batch has no field '${field}'`)
            const v = row[field]
            if (typeof v !== "number") {
              fail(`row ${index} of the batch: field '${field}' must be a number, got ${describeValue(v)}`)
            }
            sum += v as number
          })
          if (!Number.isFinite(sum)) {
            return { _tag: "Error", reason: { reason: "float_overflow", batch_size: rows.length, valid_count: rows.length } }
          }
          const count = rows.length
          const out: Record<string, unknown> = { count, sum, batch_size: count }
          if (options.compute_mean) out["mean"] = sum / count
          if (group !== undefined) {
            const first = rows[0]!
            if (!hasOwn(first, group)) fail(`row 0 of the batch has no group_by field '${group}'`)
            const value = first[group]
            rows.forEach((row, index) => {
              if (index === 0) return
              if (!hasOwn(row, group)) fail(`row ${index} of the batch has no group_by field '${group}'`)
              if (!pyEquals(row[group], value)) {
                fail(
                  `the batch mixes values of group_by field '${group}': row 0 has ${describeValue(value)}, ` +
                    `row ${index} has ${describeValue(row[group])}; make the aggregation's trigger cut batches ` +
                    `that hold one '${group}' each, or remove group_by`
                )
              }
            })
            setField(out, group, value)
          }
          return { _tag: "Success", rows: [out] }
        }
      }
      return instance
    })
}
