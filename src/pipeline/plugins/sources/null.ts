/**
 * The `null` source: yields no rows (for pipelines driven by other inputs, and tests).
 */
import { Effect, Schema, Stream } from "effect"
import { decodeOptions, Destination } from "../options.js"
import type { SourceInstance, SourcePlugin } from "../protocol.js"
import { OBSERVED_SCHEMA, parseSchemaConfig } from "../schema.js"

const PLUGIN = "null"

const NullOptions = Schema.Struct({
  schema: Schema.optional(Schema.Unknown),
  on_validation_failure: Schema.optionalWith(Destination, { default: () => "discard" })
})

export const nullSource: SourcePlugin = {
  kind: "source",
  name: PLUGIN,
  description: "Produces no rows.",
  create: (rawOptions) =>
    Effect.gen(function*() {
      const options = yield* decodeOptions(PLUGIN, NullOptions, rawOptions)
      const schema = options.schema === undefined ? OBSERVED_SCHEMA : yield* parseSchemaConfig(PLUGIN, options.schema)
      const instance: SourceInstance = {
        plugin: PLUGIN,
        onValidationFailure: options.on_validation_failure,
        schema,
        read: Stream.empty
      }
      return instance
    })
}
