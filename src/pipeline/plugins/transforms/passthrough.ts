/**
 * The `passthrough` transform: outputs an unchanged copy of each row.
 */
import { Effect, Schema } from "effect"
import type { RowTransformInstance, TransformPlugin } from "../protocol.js"
import { TransformResult } from "../protocol.js"
import { copyRow, decodeTransform, makeInputValidator, TransformCommonFields } from "./common.js"

const PLUGIN = "passthrough"

const PassthroughOptions = Schema.Struct({
  ...TransformCommonFields,
  validate_input: Schema.optionalWith(Schema.Boolean, { default: () => false })
})

export const passthroughTransform: TransformPlugin = {
  kind: "transform",
  name: PLUGIN,
  description: "Passes each row through unchanged.",
  batchAware: false,
  create: (raw) =>
    Effect.gen(function*() {
      const { inputSchema, options, schema } = yield* decodeTransform(PLUGIN, PassthroughOptions, raw)
      const check = makeInputValidator(PLUGIN, options.validate_input, schema)
      const instance: RowTransformInstance = {
        _tag: "RowTransform",
        plugin: PLUGIN,
        onError: options.on_error,
        inputSchema,
        outputSchema: schema,
        process: (row) => {
          check(row)
          return TransformResult.success(copyRow(row))
        }
      }
      return instance
    })
}
