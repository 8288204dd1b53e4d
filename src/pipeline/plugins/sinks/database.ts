/**
 * The `database` sink: inserts rows into a SQLite table.
 *
 * The sink has a connection of its own (never the audit database's), opened at the
 * first non-empty write, so a sink that receives no rows creates no database file.
 * That first write also creates the table (after dropping it once with
 * `if_exists: replace`). Each write is one transaction; a committed SQLite
 * transaction is durable, so `flush` has nothing left to do.
 *
 * Artifact: `pathOrUri` is the configured URL. `contentHash` is the SHA-256 of the
 * committed rows as JSON Lines — each row, in insert order, as Python's
 * `json.dumps` of the row (declared float fields as floats) followed by `\n` — and
 * `sizeBytes` is the length of that text in bytes. An auditor can recompute it from
 * the table's rows without knowing how SQLite stores them.
 */
import { createHash, type Hash } from "node:crypto"
import { mkdir } from "node:fs/promises"
import { dirname } from "node:path"
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { Effect, Exit, Schema, Scope } from "effect"
import { pyJsonDumps } from "../../../core/python/json.js"
import { pyStrRepr } from "../../../core/python/repr.js"
import { decodeOptions } from "../options.js"
import type { FieldType, Row, SchemaConfig, SinkCommitted, SinkInstance, SinkPlugin, SinkWriteOptions } from "../protocol.js"
import { PluginConfigError } from "../protocol.js"
import { parseSchemaConfig } from "../schema.js"
import {
  columnsFor,
  declaredTypes,
  describeCause,
  extraKeys,
  hasOwn,
  makeLifecycle,
  NonEmptyString,
  RowSift,
  runError,
  schemaProblem,
  showRow,
  type SinkLabel,
  validateBatch,
  writeAfterComplete
} from "./common.js"

const PLUGIN = "database"

export const DatabaseSinkOptions = Schema.Struct({
  url: NonEmptyString,
  table: NonEmptyString,
  schema: Schema.Unknown,
  if_exists: Schema.optionalWith(Schema.Literal("append", "replace"), { default: () => "append" as const }),
  validate_input: Schema.optionalWith(Schema.Boolean, { default: () => false })
})

/** SQLite allows at most 32,766 bound parameters per statement. */
export const MAX_PARAMETERS = 32_766

/** Column types by declared field type (undeclared columns are VARCHAR). */
export const SQL_TYPES: Readonly<Record<FieldType, string>> = {
  str: "VARCHAR",
  int: "INTEGER",
  float: "FLOAT",
  bool: "BOOLEAN",
  any: "VARCHAR"
}

/**
 * The SQLite file named by a URL: `sqlite:///relative.db`, `sqlite:////abs.db`,
 * `sqlite://` or `:memory:` (in memory), or a plain path. Other schemes are refused.
 */
export const sqliteFilename = (url: string): { readonly filename: string } | { readonly error: string } => {
  if (url === ":memory:") return { filename: ":memory:" }
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/s.exec(url)
  if (m === null) return { filename: url }
  const scheme = m[1]!.toLowerCase()
  if (scheme !== "sqlite" && !scheme.startsWith("sqlite+")) {
    return { error: `only sqlite URLs are supported (sqlite:///relative.db, sqlite:////absolute.db), got scheme '${m[1]}'` }
  }
  const rest = m[2]!
  if (rest.includes("?")) return { error: "query parameters in the URL are not supported" }
  if (rest === "" || rest === "/" || rest === "/:memory:") return { filename: ":memory:" }
  if (!rest.startsWith("/")) {
    return { error: "expected sqlite:///relative/path.db or sqlite:////absolute/path.db (a sqlite URL has no host)" }
  }
  return { filename: rest.slice(1) }
}

interface Column {
  readonly name: string
  readonly type: FieldType | undefined
}

type Bound =
  | { readonly ok: true; readonly record: Record<string, unknown> }
  | { readonly ok: false; readonly problem: string }

/**
 * SQLite result codes that concern one row's values, not the database: a constraint
 * the row breaks (UNIQUE, NOT NULL, CHECK, …), a value of the wrong type for a STRICT
 * table or a rowid, a value too big. Anything else (a full disk, I/O, a locked or
 * read-only file, a missing column) concerns every row and fails the write.
 */
const rowErrorCode = (error: unknown): string | undefined => {
  const code = (error as { cause?: { code?: unknown } } | undefined)?.cause?.code
  return typeof code === "string" && (code.startsWith("SQLITE_CONSTRAINT") || code === "SQLITE_MISMATCH" || code === "SQLITE_TOOBIG")
    ? code
    : undefined
}

/** The value to bind for one cell, or an Error for values SQLite cannot store. */
const bindValue = (value: unknown, type: FieldType | undefined): unknown => {
  if (value === null || value === undefined) return null
  switch (typeof value) {
    case "string":
      return value
    case "boolean":
      return value ? 1n : 0n
    case "bigint":
      return value
    case "number":
      // A JS number binds as REAL. Where the field is not a float, bind integral values
      // as integers, as the Python driver does with ints (a VARCHAR column then holds
      // '3', not '3.0').
      return type !== "float" && Number.isInteger(value) && !Object.is(value, -0) &&
          value >= -(2 ** 63) && value < 2 ** 63
        ? BigInt(value)
        : value
    case "object":
      if (value instanceof Uint8Array) return value
      return new Error(
        `a ${Array.isArray(value) ? "list" : "mapping"} cannot be stored in a database column (only scalar values)`
      )
    default:
      return new Error(`a ${typeof value} cannot be stored in a database column`)
  }
}

const makeDatabaseSink = (
  label: SinkLabel,
  schema: SchemaConfig,
  options: Schema.Schema.Type<typeof DatabaseSinkOptions>,
  filename: string
) =>
  Effect.gen(function*() {
    const life = yield* makeLifecycle(label)
    const types = declaredTypes(schema)
    const floatFields = schema.fields.filter((f) => f.type === "float").map((f) => f.name)
    let connection: { readonly scope: Scope.CloseableScope; readonly sql: SqliteClient.SqliteClient } | undefined
    let columns: ReadonlyArray<Column> | undefined
    let hash: Hash = createHash("sha256")
    let size = 0
    let received = 0
    /** Rows the table held before this sink's first insert; known from the first write on. */
    let baseline: number | undefined
    /** Set by truncateTo: the table is continued, never dropped. */
    let continuing = false
    /** JSON Lines bytes of rows committed before a truncateTo that the artifact does not cover. */
    let bytesBefore = 0

    const prepare = Effect.suspend(() =>
      filename === ":memory:" || filename === ""
        ? Effect.void
        : Effect.tryPromise({
          try: () => mkdir(dirname(filename), { recursive: true }),
          catch: (cause) => runError(label, `cannot create the parent directory of ${filename}`, cause)
        }).pipe(Effect.asVoid)
    )

    const connect = Effect.gen(function*() {
      yield* prepare
      const scope = yield* Scope.make()
      const sql = yield* SqliteClient.make({ filename, disableWAL: true }).pipe(
        Effect.provide(Reactivity.layer),
        Scope.extend(scope),
        // the driver throws (a defect) when the file cannot be opened
        Effect.catchAllDefect((cause) => Effect.fail(runError(label, `cannot open the database ${filename}`, cause))),
        Effect.tapError(() => Scope.close(scope, Exit.void))
      )
      yield* sql`PRAGMA busy_timeout = 5000`.pipe(Effect.ignore)
      return { scope, sql }
    })

    const decideColumns = (first: Row) =>
      Effect.suspend(() => {
        const names = columnsFor(schema, first)
        const dotted = names.find((n) => n.includes("."))
        if (dotted !== undefined) {
          return Effect.fail(runError(label, `column name ${pyStrRepr(dotted)} contains '.', which is not supported`))
        }
        return Effect.succeed(names.map((name): Column => ({ name, type: types.get(name) })))
      })

    /** The values to insert for `row`, or why one of them cannot be stored. */
    const toRecord = (cols: ReadonlyArray<Column>, row: Row): Bound => {
      const record: Record<string, unknown> = {}
      for (const col of cols) {
        const bound = hasOwn(row, col.name) ? bindValue(row[col.name], col.type) : null
        if (bound instanceof Error) return { ok: false, problem: `field ${pyStrRepr(col.name)}: ${bound.message}` }
        Object.defineProperty(record, col.name, { value: bound, enumerable: true, writable: true, configurable: true })
      }
      return { ok: true, record }
    }

    const toRecords = (cols: ReadonlyArray<Column>, rows: ReadonlyArray<Row>, offset: number) =>
      Effect.suspend(() => {
        const records: Array<Record<string, unknown>> = new Array(rows.length)
        for (let i = 0; i < rows.length; i++) {
          const row = rows[i]!
          const bound = toRecord(cols, row)
          if (!bound.ok) return Effect.fail(runError(label, `input row ${offset + i}, ${bound.problem}; row: ${showRow(row)}`))
          records[i] = bound.record
        }
        return Effect.succeed(records)
      })

    const extraProblem = (names: ReadonlySet<string>, row: Row): string | undefined => {
      const extra = extraKeys(row, names)
      return extra.length === 0
        ? undefined
        : `has field(s) ${extra.map(pyStrRepr).join(", ")} that are not columns of table ${pyStrRepr(options.table)}`
    }

    const write = (rows: ReadonlyArray<Row>, writeOptions?: SinkWriteOptions) =>
      life.guard(
        "write",
        Effect.gen(function*() {
          if (life.phase() === "completed") return yield* Effect.fail(writeAfterComplete(label))
          if (rows.length === 0) return
          // Divert mode: rows that cannot be written are left out, one rule after the other.
          const sift = writeOptions?.divert === true ? new RowSift(rows) : undefined
          if (sift === undefined) yield* validateBatch(label, schema, options.validate_input, rows, received)
          else {
            sift.sift((row) => schemaProblem(schema, options.validate_input, row))
            if (sift.kept.length === 0) return sift.result()
          }
          const first = columns === undefined
          const cols = columns ?? (yield* decideColumns(rows[sift?.kept[0] ?? 0]!))
          const names = new Set(cols.map((c) => c.name))
          /** Divert mode: the bound values of each row still kept, by batch index. */
          const bound = new Map<number, Record<string, unknown>>()
          if (sift === undefined) {
            for (let i = 0; i < rows.length; i++) {
              const problem = extraProblem(names, rows[i]!)
              if (problem !== undefined) {
                return yield* Effect.fail(runError(label, `input row ${received + i} ${problem}; row: ${showRow(rows[i]!)}`))
              }
            }
          } else {
            sift.sift((row) => extraProblem(names, row))
            sift.sift((row, i) => {
              const b = toRecord(cols, row)
              if (!b.ok) return b.problem
              bound.set(i, b.record)
              return undefined
            })
            if (sift.kept.length === 0) return sift.result()
          }
          connection ??= yield* connect
          const { sql } = connection
          const table = sql(options.table)
          const chunkRows = Math.max(1, Math.floor((MAX_PARAMETERS - 1) / Math.max(1, cols.length)))
          const nextHash = hash.copy()
          let nextSize = size
          let nextBaseline = baseline
          let inserted = 0
          const hashRow = (row: Row) => {
            const line = Buffer.from(pyJsonDumps(row, { floatFields }) + "\n", "utf8")
            nextHash.update(line)
            nextSize += line.length
            inserted++
          }
          const insert = (records: ReadonlyArray<Record<string, unknown>>) => sql`INSERT INTO ${table} ${sql.insert(records)}`
          /**
           * Divert mode: a chunk goes in under a savepoint; when SQLite refuses one of its
           * rows, the chunk is undone and its rows go in one at a time, each under its own
           * savepoint, and the rows SQLite refuses are left out.
           */
          const insertSifting = (indexes: ReadonlyArray<number>, sifted: RowSift) =>
            Effect.gen(function*() {
              const whole = yield* Effect.either(sql.withTransaction(insert(indexes.map((i) => bound.get(i)!))))
              if (whole._tag === "Right") {
                for (const i of indexes) hashRow(rows[i]!)
                return
              }
              if (rowErrorCode(whole.left) === undefined) return yield* Effect.fail(whole.left)
              for (const i of indexes) {
                const one = yield* Effect.either(sql.withTransaction(insert([bound.get(i)!])))
                if (one._tag === "Right") hashRow(rows[i]!)
                else {
                  const code = rowErrorCode(one.left)
                  if (code === undefined) return yield* Effect.fail(one.left)
                  sifted.leaveOut(i, `the table refused it: ${describeCause(one.left.cause)} (${code})`)
                }
              }
            })
          const transaction = Effect.gen(function*() {
            if (first) {
              if (options.if_exists === "replace" && !continuing) yield* sql`DROP TABLE IF EXISTS ${table}`
              const defs = cols.map((c) => sql`${sql(c.name)} ${sql.literal(SQL_TYPES[c.type ?? "str"])}`)
              yield* sql`CREATE TABLE IF NOT EXISTS ${table} (${sql.csv(defs)})`
            }
            if (baseline === undefined) {
              const [counted] = yield* sql<{ readonly n: number }>`SELECT COUNT(*) AS n FROM ${table}`
              nextBaseline = Number(counted?.n ?? 0)
            }
            if (sift !== undefined) {
              const kept = [...sift.kept]
              for (let start = 0; start < kept.length; start += chunkRows) yield* insertSifting(kept.slice(start, start + chunkRows), sift)
              return
            }
            for (let start = 0; start < rows.length; start += chunkRows) {
              const slice = rows.slice(start, start + chunkRows)
              const records = yield* toRecords(cols, slice, received + start)
              yield* insert(records)
              for (const row of slice) hashRow(row)
            }
          })
          yield* sql.withTransaction(transaction).pipe(
            Effect.catchTag("SqlError", (e) =>
              Effect.fail(runError(label, `cannot insert ${sift?.kept.length ?? rows.length} row(s) into table ${pyStrRepr(options.table)}`, e)))
          )
          hash = nextHash
          size = nextSize
          baseline = nextBaseline
          columns = cols
          received += inserted
          return sift?.result()
        }).pipe(
          Effect.catchAllDefect((cause) => Effect.fail(runError(label, "write failed", cause))),
          Effect.uninterruptible
        )
      )

    const committed = (): SinkCommitted =>
      baseline === undefined
        ? { rows: received, bytes: bytesBefore + size }
        : { rows: received, bytes: bytesBefore + size, tableRows: baseline + received }

    /**
     * Deletes the rows past `state.tableRows` (in insert order) in one transaction, so
     * the next write continues right after that state. The artifact hash cannot be
     * rebuilt from the table (it hashes the rows as given), so when the cut is not to
     * this instance's own last commit, the artifact covers the rows written after it.
     */
    const truncateTo = (state: SinkCommitted) =>
      life.guard(
        "truncate",
        Effect.gen(function*() {
          if (life.phase() === "completed") {
            return yield* Effect.fail(runError(label, "truncate after on_complete: the sink is already finished"))
          }
          const current = committed()
          if (current.rows === state.rows && current.bytes === state.bytes && current.tableRows === state.tableRows) return
          const keep = state.tableRows
          if (keep === undefined) {
            if (state.rows === 0) return
            return yield* Effect.fail(runError(label, `cannot cut the table back: the committed state of ${state.rows} row(s) names no table row count`))
          }
          connection ??= yield* connect
          const { sql } = connection
          const table = sql(options.table)
          const cut = Effect.gen(function*() {
            const [exists] = yield* sql<{ readonly n: number }>`
              SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ${options.table}`
            if (Number(exists?.n ?? 0) === 0) {
              return keep === 0 ? undefined : `table ${pyStrRepr(options.table)} does not exist, but ${keep} row(s) of it were committed`
            }
            const [counted] = yield* sql<{ readonly n: number }>`SELECT COUNT(*) AS n FROM ${table}`
            const n = Number(counted?.n ?? 0)
            if (n < keep) return `table ${pyStrRepr(options.table)} holds ${n} row(s), fewer than the ${keep} committed`
            if (n > keep) yield* sql`DELETE FROM ${table} WHERE rowid IN (SELECT rowid FROM ${table} ORDER BY rowid LIMIT -1 OFFSET ${keep})`
            return undefined
          })
          const problem = yield* sql.withTransaction(cut).pipe(
            Effect.catchTag("SqlError", (e) =>
              Effect.fail(runError(label, `cannot cut table ${pyStrRepr(options.table)} back to ${keep} row(s)`, e)))
          )
          if (problem !== undefined) return yield* Effect.fail(runError(label, problem))
          received = state.rows
          baseline = keep - state.rows
          continuing = true
          bytesBefore = state.bytes
          hash = createHash("sha256")
          size = 0
        }).pipe(
          Effect.catchAllDefect((cause) => Effect.fail(runError(label, "truncate failed", cause))),
          Effect.uninterruptible
        )
      )

    const instance: SinkInstance = {
      plugin: PLUGIN,
      inputSchema: schema,
      ...(filename === ":memory:" || filename === "" ? {} : { outputFile: { key: "url", path: filename, part: `table ${options.table.toLowerCase()}` } }),
      committed: life.exclusive(Effect.suspend(() =>
        // Before the first write of an appending sink, what is committed is the table as
        // it was: a resume from here must remove rows a crashed attempt added to it.
        baseline !== undefined || options.if_exists !== "append" || filename === ":memory:" || filename === ""
          ? Effect.succeed(committed())
          : Effect.gen(function*() {
            connection ??= yield* connect
            const { sql } = connection
            const [exists] = yield* sql<{ readonly n: number }>`
              SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ${options.table}`
            if (Number(exists?.n ?? 0) === 0) return { ...committed(), tableRows: 0 }
            const [counted] = yield* sql<{ readonly n: number }>`SELECT COUNT(*) AS n FROM ${sql(options.table)}`
            return { ...committed(), tableRows: Number(counted?.n ?? 0) }
          }).pipe(Effect.orElseSucceed(committed))
      )),
      truncateTo,
      onStart: life.guard("on_start", prepare),
      write,
      // each write committed its own transaction, which SQLite made durable
      flush: life.guard("flush", Effect.void),
      onComplete: life.guard(
        "on_complete",
        Effect.sync(() => {
          life.setPhase("completed")
        })
      ),
      close: life.exclusive(
        Effect.suspend(() => {
          if (life.phase() === "closed") return Effect.void
          life.setPhase("closed")
          const open = connection
          connection = undefined
          return open === undefined ? Effect.void : Scope.close(open.scope, Exit.void)
        })
      ),
      artifact: life.exclusive(
        Effect.sync(() =>
          // A continued table (resume) has an artifact even when nothing was added to it.
          columns === undefined && baseline === undefined
            ? undefined
            : { pathOrUri: options.url, contentHash: hash.copy().digest("hex"), sizeBytes: size }
        )
      )
    }
    return instance
  })

export const databaseSink: SinkPlugin = {
  kind: "sink",
  name: PLUGIN,
  description: "Inserts rows into a SQLite table (one transaction per write)",
  create: (options, ctx) =>
    Effect.gen(function*() {
      const decoded = yield* decodeOptions(PLUGIN, DatabaseSinkOptions, options)
      const schema = yield* parseSchemaConfig(PLUGIN, decoded.schema)
      const target = sqliteFilename(decoded.url)
      if ("error" in target) {
        return yield* Effect.fail(new PluginConfigError({ plugin: PLUGIN, key: "url", value: decoded.url, message: target.error }))
      }
      if (decoded.table.includes(".")) {
        return yield* Effect.fail(
          new PluginConfigError({
            plugin: PLUGIN,
            key: "table",
            value: decoded.table,
            message: `table name ${pyStrRepr(decoded.table)} contains '.', which is not supported`
          })
        )
      }
      const label: SinkLabel = { plugin: PLUGIN, nodeName: ctx.nodeName, target: decoded.url }
      return yield* makeDatabaseSink(label, schema, decoded, target.filename)
    })
}
