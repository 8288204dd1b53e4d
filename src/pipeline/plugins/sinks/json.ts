/**
 * The `json` sink: `format: json` writes one JSON array of every row, `jsonl` one
 * object per line. Text follows Python's `json.dumps` (`, ` and `: ` separators,
 * `\uXXXX` escapes, floats by `repr`).
 *
 * Streaming: the array is written as rows arrive — `[` and the first items at the
 * first non-empty write, `, ` + items at each later write, `]` in on_complete — so
 * the finished file is exactly the single dump of all rows (no trailing newline), or
 * its pretty form with `indent`.
 */
import { Effect, Schema } from "effect"
import { pyJsonDumps } from "../../../core/python/json.js"
import { NonNegativeInt } from "../options.js"
import type { PluginContext, Row, SchemaConfig, SinkInstance, SinkPlugin } from "../protocol.js"
import {
  fileSinkOptionFields,
  makeLifecycle,
  renameKeys,
  resolveRenames,
  runError,
  setUpFileSink,
  type SinkLabel,
  type TextEncoding,
  validateBatch,
  writeAfterComplete
} from "./common.js"
import { closeAndArtifact, makeChunker, makeTextFile } from "./text-file.js"

const PLUGIN = "json"

export const JsonSinkOptions = Schema.Struct({
  ...fileSinkOptionFields,
  format: Schema.optional(Schema.NullOr(Schema.Literal("json", "jsonl"))),
  indent: Schema.optional(Schema.NullOr(NonNegativeInt))
})

type Options = Schema.Schema.Type<typeof JsonSinkOptions>

/** `jsonl` when the path ends in `.jsonl`, else `json`. */
export const defaultJsonFormat = (path: string): "json" | "jsonl" =>
  path.toLowerCase().endsWith(".jsonl") ? "jsonl" : "json"

const makeJsonSink = (
  label: SinkLabel,
  ctx: PluginContext,
  schema: SchemaConfig,
  options: Options,
  encoding: TextEncoding
) =>
  Effect.gen(function*() {
    const life = yield* makeLifecycle(label)
    const file = makeTextFile(label, options.path, encoding)
    const format = options.format ?? defaultJsonFormat(options.path)
    // Lines of a jsonl file must stay single lines, so indent applies to arrays only.
    const indent = format === "json" ? options.indent ?? undefined : undefined
    // The array format always rewrites: its file is one document.
    const openMode = format === "jsonl" ? options.mode : "write"
    const declaredFloats = schema.mode === "observed"
      ? []
      : schema.fields.filter((f) => f.type === "float").map((f) => f.name)
    let renames: ReadonlyMap<string, string> | undefined
    let floatFields: ReadonlySet<string> = new Set(declaredFloats)
    let started = false
    let received = 0

    const itemPrefix = indent === undefined ? "" : "\n" + " ".repeat(indent)
    const firstPrefix = "[" + itemPrefix
    const nextPrefix = (indent === undefined ? ", " : ",") + itemPrefix
    const closing = indent === undefined ? "]" : "\n]"

    const dump = (row: Row, index: number): Effect.Effect<string, ReturnType<typeof runError>> =>
      Effect.try({
        try: () =>
          pyJsonDumps(renames === undefined ? row : renameKeys(row, renames), {
            indent,
            floatFields,
            level: format === "json" && indent !== undefined ? 1 : 0
          }),
        catch: (cause) => runError(label, `cannot encode input row ${index} as JSON`, cause)
      })

    const write = (rows: ReadonlyArray<Row>) =>
      life.guard(
        "write",
        Effect.gen(function*() {
          if (life.phase() === "completed") return yield* Effect.fail(writeAfterComplete(label))
          if (rows.length === 0) return
          yield* validateBatch(label, schema, options.validate_input, rows, received)
          if (!file.isOpen()) {
            renames = yield* resolveRenames(label, ctx, options.display_headers, options.restore_source_headers)
            if (renames !== undefined) floatFields = new Set(declaredFloats.map((f) => renames!.get(f) ?? f))
            yield* file.open(openMode)
          }
          const out = makeChunker(file)
          for (let i = 0; i < rows.length; i++) {
            const text = yield* dump(rows[i]!, received + i)
            if (format === "jsonl") {
              yield* out.push(text + "\n")
            } else {
              yield* out.push((started ? nextPrefix : firstPrefix) + text)
              started = true
            }
          }
          yield* out.drain()
          received += rows.length
        }).pipe(Effect.uninterruptible)
      )

    const onComplete = life.guard(
      "on_complete",
      Effect.gen(function*() {
        if (life.phase() === "completed") return
        life.setPhase("completed")
        if (format === "json" && started) {
          yield* file.append(closing)
          yield* file.sync
        }
      }).pipe(Effect.uninterruptible)
    )

    const instance: SinkInstance = {
      plugin: PLUGIN,
      inputSchema: schema,
      onStart: life.guard("on_start", file.prepare),
      write,
      flush: life.guard("flush", file.sync),
      onComplete,
      ...closeAndArtifact(life, file)
    }
    return instance
  })

export const jsonSink: SinkPlugin = {
  kind: "sink",
  name: PLUGIN,
  description: "Writes rows to a JSON array file or a JSON Lines file (Python json.dumps text)",
  create: (options, ctx) =>
    Effect.flatMap(
      setUpFileSink(PLUGIN, JsonSinkOptions, options, ctx),
      ({ decoded, encoding, label, schema }) => makeJsonSink(label, ctx, schema, decoded, encoding)
    )
}
