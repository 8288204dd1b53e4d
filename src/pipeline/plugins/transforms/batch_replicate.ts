/**
 * The `batch_replicate` aggregation plugin: emits each row of a batch several times.
 *
 * The number of copies comes from `copies_field` or `default_copies` when the field is
 * absent. A value that is not a whole number (a boolean included) stops the run: the
 * pipeline's data is not what the settings say. A whole number outside
 * 1..`max_copies` is a problem with that row only: the row is refused (it ends
 * QUARANTINED with `{reason: "invalid_copies", field, value}`) and the rest of the
 * batch goes on. Each copy gets `copy_index` (0-based) unless `include_copy_index` is
 * false.
 */
import { Effect, Schema } from "effect"
import { PositiveInt, showValue } from "../options.js"
import type { BatchRowError, BatchTransformInstance, Row, TransformPlugin } from "../protocol.js"
import { PluginConfigError, PluginRunError, setField } from "../protocol.js"
import { OBSERVED_SCHEMA } from "../schema.js"
import { copyRow, decodeTransform, describeValue, hasOwn, TransformCommonFields } from "./common.js"

const PLUGIN = "batch_replicate"

/** ELSPETH's bound on copies per row (and on both options). */
export const MAX_COPIES_LIMIT = 10_000

const CopiesOption = PositiveInt.pipe(
  Schema.filter((n) => n <= MAX_COPIES_LIMIT || `expected at most ${MAX_COPIES_LIMIT}, got ${showValue(n)}`)
)

const BatchReplicateOptions = Schema.Struct({
  ...TransformCommonFields,
  copies_field: Schema.optionalWith(
    Schema.String.pipe(Schema.filter((s) => s !== "" || "expected a field name, got an empty string")),
    { default: () => "copies" }
  ),
  default_copies: Schema.optionalWith(CopiesOption, { default: () => 1 }),
  max_copies: Schema.optionalWith(CopiesOption, { default: () => MAX_COPIES_LIMIT }),
  include_copy_index: Schema.optionalWith(Schema.Boolean, { default: () => true })
})

const isWholeNumber = (v: unknown): v is number | bigint =>
  typeof v === "bigint" || (typeof v === "number" && Number.isInteger(v))

export const batchReplicateTransform: TransformPlugin = {
  kind: "transform",
  name: PLUGIN,
  description: "Replicates each row of a batch a number of times.",
  batchAware: true,
  create: (raw) =>
    Effect.gen(function*() {
      const { inputSchema, options } = yield* decodeTransform(PLUGIN, BatchReplicateOptions, raw)
      if (options.default_copies > options.max_copies) {
        return yield* new PluginConfigError({
          plugin: PLUGIN,
          key: "default_copies",
          value: options.default_copies,
          message: `default_copies (${options.default_copies}) exceeds max_copies (${options.max_copies})`
        })
      }
      const field = options.copies_field
      const max = options.max_copies
      /** The copies of one row, or undefined when the row is refused. */
      const copiesOf = (row: Row, index: number): number | undefined => {
        if (!hasOwn(row, field)) return options.default_copies
        const v = row[field]
        if (!isWholeNumber(v)) {
          throw new PluginRunError({
            plugin: PLUGIN,
            message: `row ${index} of the batch: field '${field}' must be a whole number, got ${describeValue(v)}`
          })
        }
        return v >= 1 && v <= max ? Number(v) : undefined
      }
      const instance: BatchTransformInstance = {
        _tag: "BatchTransform",
        plugin: PLUGIN,
        onError: options.on_error,
        inputSchema,
        outputSchema: OBSERVED_SCHEMA,
        processBatch: (rows) => {
          if (rows.length === 0) return { _tag: "Error", reason: { reason: "empty_batch" } }
          const out: Array<Row> = []
          const origins: Array<number> = []
          const rowErrors: Array<BatchRowError> = []
          rows.forEach((row, index) => {
            const copies = copiesOf(row, index)
            if (copies === undefined) {
              rowErrors.push({
                index,
                reason: {
                  reason: "invalid_copies",
                  field,
                  value: row[field],
                  message: `'${field}' must be between 1 and ${max} (max_copies), got ${describeValue(row[field])}`
                }
              })
              return
            }
            for (let c = 0; c < copies; c++) {
              const copy = copyRow(row)
              if (options.include_copy_index) setField(copy, "copy_index", c)
              out.push(copy)
              origins.push(index)
            }
          })
          return rowErrors.length === 0
            ? { _tag: "Success", rows: out, origins }
            : { _tag: "Success", rows: out, origins, rowErrors }
        }
      }
      return instance
    })
}
