/**
 * The `json` sink: `format: json` writes one JSON array of every row, `jsonl` one
 * object per line. Text follows Python's `json.dumps` (`, ` and `: ` separators,
 * `\uXXXX` escapes, floats by `repr`).
 *
 * Streaming: the array is written as rows arrive — `[` and the first items at the
 * first non-empty write, `, ` + items at each later write, `]` in on_complete — so
 * the finished file is exactly the single dump of all rows (no trailing newline), or
 * its pretty form with `indent`.
 *
 * Committed states (after each flush) never include the closing `]`: every one is a
 * prefix of the finished file, so a file cut back to one (after a failed write, or
 * to continue a run) can be appended to and ends exactly as an uninterrupted run's.
 */
import { Effect, Schema } from "effect"
import { pyJsonDumps } from "../../../core/python/json.js"
import { NonNegativeInt } from "../options.js"
import type {
  PluginContext,
  PluginRunError,
  Row,
  SchemaConfig,
  SinkCommitted,
  SinkInstance,
  SinkPlugin,
  SinkWriteOptions
} from "../protocol.js"
import {
  describeCause,
  fileSinkOptionFields,
  makeLifecycle,
  renameKeys,
  resolveRenames,
  RowSift,
  runError,
  schemaProblem,
  setUpFileSink,
  type SinkLabel,
  type TextEncoding,
  validateBatch,
  withNote,
  writeAfterComplete
} from "./common.js"
import type { Fault } from "./io.js"
import { closeAndArtifact, type FileMark, makeChunker, makeCommits, makeTextFile } from "./text-file.js"

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
  encoding: TextEncoding,
  faults: ReadonlyArray<Fault>
) =>
  Effect.gen(function*() {
    const life = yield* makeLifecycle(label)
    const format = options.format ?? defaultJsonFormat(options.path)
    // The array format always rewrites: its file is one document.
    const openMode = format === "jsonl" ? options.mode : "write"
    const file = makeTextFile(label, options.path, encoding, openMode, faults)
    const commits = makeCommits(file)
    // Lines of a jsonl file must stay single lines, so indent applies to arrays only.
    const indent = format === "json" ? options.indent ?? undefined : undefined
    const declaredFloats = schema.mode === "observed"
      ? []
      : schema.fields.filter((f) => f.type === "float").map((f) => f.name)
    let renames: ReadonlyMap<string, string> | undefined
    let renamesResolved = false
    let floatFields: ReadonlySet<string> = new Set(declaredFloats)
    let started = false
    let received = 0

    const itemPrefix = indent === undefined ? "" : "\n" + " ".repeat(indent)
    const firstPrefix = "[" + itemPrefix
    const nextPrefix = (indent === undefined ? ", " : ",") + itemPrefix
    const closing = indent === undefined ? "]" : "\n]"

    const resolveNames = Effect.suspend(() =>
      renamesResolved
        ? Effect.void
        : Effect.map(resolveRenames(label, ctx, options.display_headers, options.restore_source_headers), (r) => {
          renames = r
          renamesResolved = true
          if (r !== undefined) floatFields = new Set(declaredFloats.map((f) => r.get(f) ?? f))
        })
    )

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

    /** The sink's own state as of `state`: an array has begun once a row is in it. */
    const restore = (state: SinkCommitted) => {
      received = state.rows
      started = format === "json" && state.rows > 0
    }

    /** A failed flush (its I/O error cut the file back) leaves the sink as it was at the last flush. */
    const undoFlush = (error: PluginRunError) =>
      Effect.suspend(() => {
        restore(commits.get())
        return Effect.fail(error)
      })

    const write = (rows: ReadonlyArray<Row>, writeOptions?: SinkWriteOptions) =>
      life.guard(
        "write",
        Effect.suspend(() => {
          // A failed write leaves no byte of its batch: an I/O error has cut the file back
          // to the last flush; any other failure is cut back to where the batch began.
          const startedBefore = started
          let mark: FileMark | undefined
          const undo = (error: PluginRunError) => {
            if (mark !== undefined && file.size() < mark.size) return undoFlush(error)
            started = startedBefore
            return Effect.flatMap(mark === undefined ? Effect.either(Effect.void) : Effect.either(file.rollbackTo(mark)), (cut) =>
              Effect.fail(cut._tag === "Left" ? withNote(error, cut.left) : error))
          }
          return Effect.gen(function*() {
            if (life.phase() === "completed") return yield* Effect.fail(writeAfterComplete(label))
            if (rows.length === 0) return
            // Divert mode: rows that cannot be written are left out instead of failing the batch.
            const sift = writeOptions?.divert === true ? new RowSift(rows) : undefined
            if (sift === undefined) yield* validateBatch(label, schema, options.validate_input, rows, received)
            else {
              sift.sift((row) => schemaProblem(schema, options.validate_input, row))
              if (sift.kept.length === 0) return sift.result()
            }
            yield* resolveNames
            const indexes = sift === undefined ? rows.map((_, i) => i) : sift.kept
            let written = 0
            const out = makeChunker(file)
            for (const i of indexes) {
              const dumped = yield* Effect.either(dump(rows[i]!, received + written))
              if (dumped._tag === "Left") {
                if (sift === undefined) return yield* Effect.fail(dumped.left)
                sift.leaveOut(i, `cannot be encoded as JSON: ${describeCause(dumped.left.cause)}`)
                continue
              }
              // the file is opened by the first row that is written
              if (mark === undefined) {
                yield* file.open
                mark = file.mark()
              }
              const text = dumped.right
              if (format === "jsonl") {
                yield* out.push(text + "\n")
              } else {
                yield* out.push((started ? nextPrefix : firstPrefix) + text)
                started = true
              }
              written++
            }
            yield* out.drain()
            received += written
            return sift?.result()
          }).pipe(Effect.catchAll(undo))
        }).pipe(Effect.uninterruptible)
      )

    // The closing `]` is written after the last committed state, so every committed
    // state is a prefix of the finished file: a cut to it removes the `]` again.
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

    const truncateTo = (state: SinkCommitted) =>
      life.guard(
        "truncate",
        Effect.gen(function*() {
          if (life.phase() === "completed") return yield* Effect.fail(runError(label, "truncate after on_complete: the sink is already finished"))
          yield* resolveNames
          yield* file.truncate(state.bytes)
          commits.set(state)
          restore(state)
        }).pipe(Effect.uninterruptible)
      )

    const instance: SinkInstance = {
      plugin: PLUGIN,
      inputSchema: schema,
      outputFile: { key: "path", path: options.path },
      onStart: life.guard("on_start", file.prepare),
      write,
      flush: life.guard(
        "flush",
        Effect.suspend(() =>
          life.phase() === "completed"
            ? file.sync
            : file.sync.pipe(Effect.tap(() => commits.mark(received)), Effect.catchAll(undoFlush))
        ).pipe(Effect.uninterruptible)
      ),
      onComplete,
      committed: life.exclusive(Effect.sync(commits.get)),
      truncateTo,
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
      ({ decoded, encoding, faults, label, schema }) => makeJsonSink(label, ctx, schema, decoded, encoding, faults)
    )
}
