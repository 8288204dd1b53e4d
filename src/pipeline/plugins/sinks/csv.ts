/**
 * The `csv` sink: one header line, then one line per row, in the dialect of Python's
 * `csv` module (minimal quoting, CRLF line ends, `""` for a lone empty field).
 * Cells are Python text: floats by `repr`, `True`/`False`, empty for null, lists and
 * mappings by `repr`.
 *
 * Streaming: the file is created at the first non-empty write and each later batch
 * is appended to the open handle. The column set is fixed by that first write.
 */
import { createReadStream } from "node:fs"
import { stat } from "node:fs/promises"
import { parse } from "csv-parse"
import { Effect, Schema } from "effect"
import type {
  FieldType,
  PluginContext,
  PluginRunError,
  Row,
  SchemaConfig,
  SinkCommitted,
  SinkInstance,
  SinkPlugin,
  SinkWriteOptions
} from "../protocol.js"
import { pyNumberRepr, pyRepr, pyStrRepr } from "../../../core/python/repr.js"
import { csvLines } from "./csv-text.js"
import {
  columnsFor,
  declaredTypes,
  extraKeys,
  fileSinkOptionFields,
  hasOwn,
  makeLifecycle,
  resolveRenames,
  RowSift,
  runError,
  schemaProblem,
  setUpFileSink,
  showRow,
  type SinkLabel,
  type TextEncoding,
  validateBatch,
  withNote,
  writeAfterComplete
} from "./common.js"
import type { Fault } from "./io.js"
import { closeAndArtifact, type FileMark, makeCommits, makeTextFile } from "./text-file.js"

const PLUGIN = "csv"

const Delimiter = Schema.String.pipe(
  Schema.filter((s) =>
    (s.length === 1 && s !== "\"" && s !== "\r" && s !== "\n") ||
    "expected a single character other than a quote or a line break"
  ),
  Schema.annotations({ title: "a single character" })
)

export const CsvSinkOptions = Schema.Struct({
  ...fileSinkOptionFields,
  delimiter: Schema.optionalWith(Delimiter, { default: () => "," })
})

/** Rows are turned into text in slices of this many, so a large batch never becomes one string. */
const SLICE_ROWS = 512

/** Python text of one cell; `type` is the field's declared type, if any. */
export const csvCell = (value: unknown, type: FieldType | undefined): string => {
  if (value === null || value === undefined) return ""
  switch (typeof value) {
    case "string":
      return value
    case "boolean":
      return value ? "True" : "False"
    case "number":
      return pyNumberRepr(value, type)
    case "bigint":
      return value.toString()
    default:
      return pyRepr(value)
  }
}

/** The first record of an existing CSV file, or undefined when it is missing or empty. */
const readHeader = (path: string, delimiter: string, encoding: TextEncoding): Promise<ReadonlyArray<string> | undefined> =>
  stat(path).then(
    (st) =>
      st.size === 0 ? undefined : new Promise<ReadonlyArray<string> | undefined>((resolve, reject) => {
        const input = createReadStream(path)
        const parser = parse({ delimiter, bom: true, encoding: encoding.decoder, to: 1, relax_column_count: true })
        let first: ReadonlyArray<string> | undefined
        parser.on("readable", () => {
          let record: unknown
          while ((record = parser.read()) !== null) {
            if (first === undefined) first = record as ReadonlyArray<string>
          }
        })
        parser.on("error", (e) => {
          input.destroy()
          reject(e)
        })
        parser.on("end", () => {
          input.destroy()
          resolve(first)
        })
        input.on("error", reject)
        input.pipe(parser)
      }),
    (e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? undefined : Promise.reject(e))
  )

interface Layout {
  readonly columns: ReadonlyArray<string>
  readonly columnSet: ReadonlySet<string>
  /** Header cells to write, or undefined when an existing header is reused. */
  readonly header: ReadonlyArray<string> | undefined
}

const makeCsvSink = (
  label: SinkLabel,
  ctx: PluginContext,
  schema: SchemaConfig,
  options: Schema.Schema.Type<typeof CsvSinkOptions>,
  encoding: TextEncoding,
  faults: ReadonlyArray<Fault>
) =>
  Effect.gen(function*() {
    const life = yield* makeLifecycle(label)
    const file = makeTextFile(label, options.path, encoding, options.mode, faults)
    const commits = makeCommits(file)
    const types = declaredTypes(schema)
    const { delimiter } = options
    let layout: Layout | undefined
    let received = 0

    const renamesFromOptions = () => {
      const headers = options.headers
      if (headers !== undefined && headers !== null) {
        // `normalized` and `original` both keep field names as they are.
        return Effect.succeed(typeof headers === "string" ? undefined : new Map(Object.entries(headers)))
      }
      return resolveRenames(label, ctx, options.display_headers, options.restore_source_headers)
    }

    /** The rows' lines; a field holding CR or LF is quoted, and so is a lone empty field (as Python's writer does). */
    const render = (rows: ReadonlyArray<Row>, columns: ReadonlyArray<string>, columnTypes: ReadonlyArray<FieldType | undefined>): string =>
      csvLines(rows.length, columns.length, (i, j) => {
        const row = rows[i]!
        const c = columns[j]!
        return hasOwn(row, c) ? csvCell(row[c], columnTypes[j]) : ""
      }, delimiter)

    /** The layout of the header already in the file, or undefined for an empty or missing file. */
    const existingLayout = Effect.gen(function*() {
      const renames = yield* renamesFromOptions()
      const existing = yield* Effect.tryPromise({
        try: () => readHeader(options.path, delimiter, encoding),
        catch: (cause) => runError(label, `cannot read the existing header of ${options.path}`, cause)
      })
      if (existing === undefined) return undefined
      const back = new Map<string, string>()
      if (renames !== undefined) for (const [field, shown] of renames) if (!back.has(shown)) back.set(shown, field)
      const columns = existing.map((h) => back.get(h) ?? h)
      const declared = schema.fields.map((f) => f.name)
      if (schema.mode === "fixed" && columns.join("\u0000") !== declared.join("\u0000")) {
        return yield* Effect.fail(
          runError(
            label,
            `mode append: the existing header [${columns.map(pyStrRepr).join(", ")}] does not match the fixed schema fields [${
              declared.map(pyStrRepr).join(", ")
            }]`
          )
        )
      }
      if (schema.mode === "flexible") {
        const missing = declared.filter((d) => !columns.includes(d))
        if (missing.length > 0) {
          return yield* Effect.fail(
            runError(label, `mode append: the existing header lacks schema field(s) ${missing.map(pyStrRepr).join(", ")}`)
          )
        }
      }
      return { columns, columnSet: new Set(columns), header: undefined } satisfies Layout
    })

    const decideLayout = (firstRow: Row) =>
      Effect.gen(function*() {
        if (options.mode === "append") {
          const existing = yield* existingLayout
          if (existing !== undefined) return existing
        }
        const renames = yield* renamesFromOptions()
        const columns = columnsFor(schema, firstRow)
        return {
          columns,
          columnSet: new Set(columns),
          header: columns.map((c) => renames?.get(c) ?? c)
        } satisfies Layout
      })

    const keysProblem = (current: Layout, row: Row): string | undefined => {
      const extra = extraKeys(row, current.columnSet)
      return extra.length === 0 ? undefined : `dict contains fields not in fieldnames: ${extra.map(pyStrRepr).join(", ")}`
    }

    const checkKeys = (current: Layout, rows: ReadonlyArray<Row>) =>
      Effect.suspend(() => {
        for (let i = 0; i < rows.length; i++) {
          const problem = keysProblem(current, rows[i]!)
          if (problem !== undefined) {
            return Effect.fail(runError(label, `input row ${received + i}: ${problem}; row: ${showRow(rows[i]!)}`))
          }
        }
        return Effect.void
      })

    /** A cell of `row` the encoding cannot hold (every key is checked: a column, or an extra key that keeps the row out anyway). */
    const encodingProblem = (row: Row): string | undefined => {
      for (const key of Object.keys(row)) {
        const problem = encoding.problem(csvCell(row[key], types.get(key)))
        if (problem !== undefined) return `${problem} in field ${pyStrRepr(key)}`
      }
      return undefined
    }

    const writeRows = (current: Layout, rows: ReadonlyArray<Row>) =>
      Effect.gen(function*() {
        const { columns } = current
        const columnTypes = columns.map((c) => types.get(c))
        // the header goes out with the first batch, unless an existing one is reused
        if (layout === undefined && current.header !== undefined) {
          const header = current.header
          yield* file.append(csvLines(1, header.length, (_, j) => header[j]!, delimiter))
        }
        for (let start = 0; start < rows.length; start += SLICE_ROWS) {
          yield* file.append(render(rows.slice(start, start + SLICE_ROWS), columns, columnTypes))
        }
      })

    /** The sink's own state as of `state`: its rows, and no layout while none of its rows is in the file. */
    const restore = (state: SinkCommitted) => {
      received = state.rows
      if (state.rows === 0) layout = undefined
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
          let mark: FileMark | undefined
          const undo = (error: PluginRunError) =>
            mark !== undefined && file.size() < mark.size
              ? undoFlush(error)
              : Effect.flatMap(mark === undefined ? Effect.either(Effect.void) : Effect.either(file.rollbackTo(mark)), (cut) =>
                Effect.fail(cut._tag === "Left" ? withNote(error, cut.left) : error))
          return Effect.gen(function*() {
            if (life.phase() === "completed") return yield* Effect.fail(writeAfterComplete(label))
            if (rows.length === 0) return
            // Divert mode: rows that cannot be written are left out, one rule after the other.
            const sift = writeOptions?.divert === true ? new RowSift(rows) : undefined
            let batch = rows
            if (sift === undefined) yield* validateBatch(label, schema, options.validate_input, rows, received)
            else {
              sift.sift((row) => schemaProblem(schema, options.validate_input, row))
              sift.sift(encodingProblem)
              if (sift.kept.length === 0) return sift.result()
              batch = sift.keptRows()
            }
            const current = layout ?? (yield* decideLayout(batch[0]!))
            if (sift === undefined) yield* checkKeys(current, rows)
            else {
              sift.sift((row) => keysProblem(current, row))
              if (sift.kept.length === 0) return sift.result()
              batch = sift.keptRows()
            }
            yield* file.open
            mark = file.mark()
            yield* writeRows(current, batch)
            layout = current
            received += batch.length
            return sift?.result()
          }).pipe(Effect.catchAll(undo))
        }).pipe(Effect.uninterruptible)
      )

    const truncateTo = (state: SinkCommitted) =>
      life.guard(
        "truncate",
        Effect.gen(function*() {
          if (life.phase() === "completed") return yield* Effect.fail(runError(label, "truncate after on_complete: the sink is already finished"))
          yield* file.truncate(state.bytes)
          commits.set(state)
          restore(state)
          if (state.rows > 0 && layout === undefined) {
            const existing = yield* existingLayout
            if (existing === undefined) return yield* Effect.fail(runError(label, `${options.path} has no header to continue after`))
            layout = existing
          }
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
        file.sync.pipe(
          Effect.tap(() => commits.mark(received)),
          Effect.catchAll(undoFlush),
          Effect.uninterruptible
        )
      ),
      onComplete: life.guard(
        "on_complete",
        Effect.sync(() => {
          life.setPhase("completed")
        })
      ),
      committed: life.exclusive(Effect.sync(commits.get)),
      truncateTo,
      ...closeAndArtifact(life, file)
    }
    return instance
  })

export const csvSink: SinkPlugin = {
  kind: "sink",
  name: PLUGIN,
  description: "Writes rows to a CSV file (Python csv dialect: minimal quoting, CRLF line ends)",
  create: (options, ctx) =>
    Effect.flatMap(
      setUpFileSink(PLUGIN, CsvSinkOptions, options, ctx),
      ({ decoded, encoding, faults, label, schema }) => makeCsvSink(label, ctx, schema, decoded, encoding, faults)
    )
}
