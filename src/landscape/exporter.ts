/**
 * The exporter: one run's audit trail as a stream of records, each a table row tagged
 * with its `record_type` and its position `seq` in the export.
 *
 * Order is deterministic for a given Landscape: the run, its nodes, its edges, then
 * row by row (the row, its tokens, token parents, node states, routing events and
 * outcomes), then batches with their members and outputs, artifacts, validation and
 * transform errors, operations and calls. Every query pages by keyset, and the
 * per-row tables are read a page of rows at a time (a handful of queries per page),
 * so memory stays flat in the number of rows.
 *
 * Columns keep their table names. A `*_json` column is emitted parsed, as a nested
 * value: the Landscape stores canonical JSON there, so `canonicalJson` of the nested
 * value gives back the stored text (and its stored hash).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Chunk, Clock, Effect, Option, Stream } from "effect"
import { newArtifactId, type RunId } from "../core/ids.js"
import { DEFAULT_PAYLOAD_BASE_PATH } from "../services/call-store.js"
import { ExportError, type ExportRecord, RECORD_TYPES, type RecordType } from "../services/export-store.js"
import { INTERNAL_KEY_COLUMNS } from "./compact.js"
import { payloadStoreOfRun } from "./lineage-calls.js"
import { filesystemPayloadStore } from "./payload-store.js"

export { ExportError, type ExportRecord, RECORD_TYPES, type RecordType }

/** The table each record type of an export comes from. */
export const RECORD_TABLES = {
  run: "runs",
  node: "nodes",
  edge: "edges",
  row: "rows",
  token: "tokens",
  token_parent: "token_parents",
  node_state: "node_states",
  routing_event: "routing_events",
  token_outcome: "token_outcomes",
  batch: "batches",
  batch_member: "batch_members",
  batch_output: "batch_outputs",
  artifact: "artifacts",
  validation_error: "validation_errors",
  transform_error: "transform_errors",
  operation: "operations",
  call: "calls"
} as const satisfies Record<RecordType, string>

/** Keys an export adds to a table row; no table may have a column of these names. */
export const RESERVED_KEYS: ReadonlyArray<string> = ["record_type", "seq", "signature"]

export interface ExportRecordsOptions {
  /** Inline call bodies from the payload store (see ExportStore's `ExportRecordsOptions`). */
  readonly includePayloads?: boolean
  readonly payloadDir?: string
  /** Rows read per page of the per-row section. */
  readonly rowPageSize?: number
  /** Records read per page of the other sections. */
  readonly pageSize?: number
}

export type DbRow = Record<string, unknown>

export const dbError = (what: string) => (e: SqlError): ExportError =>
  new ExportError({
    reason: "Database",
    message: `${what}: ${String((e.cause as { message?: unknown } | undefined)?.message ?? e.message)}`,
    cause: e
  })

/**
 * `{record_type, seq, ...row}` for a row of `table`, with `*_json` columns parsed and
 * bigints as numbers; seq is set when the stream numbers it. Throws ExportError.
 */
export const rowToRecord = (type: string, table: string, row: DbRow): Record<string, unknown> => {
  const out: Record<string, unknown> = { record_type: type, seq: 0 }
  // The integer key of a run, node or edge is how the Landscape stores it, not part of the record.
  const internal = INTERNAL_KEY_COLUMNS.get(table)
  for (const key of Object.keys(row)) {
    if (key === internal) continue
    if (RESERVED_KEYS.includes(key)) {
      throw new ExportError({ reason: "CorruptTrail", message: `table ${table} has a column named ${key}, which the export format reserves` })
    }
    let value = row[key]
    if (typeof value === "bigint") value = Number(value)
    if (key.endsWith("_json") && typeof value === "string") {
      try {
        value = JSON.parse(value)
      } catch (cause) {
        throw new ExportError({
          reason: "CorruptTrail",
          message: `${table}.${key} of ${describeRow(row)} is not valid JSON`,
          cause
        })
      }
    }
    Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true })
  }
  return out
}

const toRecord = (type: RecordType, row: DbRow): Record<string, unknown> => rowToRecord(type, RECORD_TABLES[type], row)

const describeRow = (row: DbRow): string => {
  for (const [k, v] of Object.entries(row)) if (k.endsWith("_id") && typeof v === "string") return `${k} ${v}`
  return "a row"
}

/** Runs `build`, turning whatever it throws into an ExportError. */
export const tryRecords = <A>(build: () => A): Effect.Effect<A, ExportError> =>
  Effect.try({
    try: build,
    catch: (e) => e instanceof ExportError ? e : new ExportError({ reason: "CorruptTrail", message: String(e), cause: e })
  })

const recordsOf = (type: RecordType, rows: ReadonlyArray<DbRow>): Effect.Effect<Array<Record<string, unknown>>, ExportError> =>
  tryRecords(() => rows.map((r) => toRecord(type, r)))

/**
 * A section read page by page: `next(cursor)` returns the page's records and the
 * cursor of the next page (none when the page was short).
 */
export const paged = <C>(
  first: C,
  next: (cursor: C) => Effect.Effect<readonly [ReadonlyArray<Record<string, unknown>>, Option.Option<C>], ExportError>
): Stream.Stream<Record<string, unknown>, ExportError> =>
  Stream.paginateChunkEffect(first, (cursor) => Effect.map(next(cursor), ([records, more]) => [Chunk.unsafeFromArray(records), more] as const))

export const exportRecords = (
  runId: RunId,
  options: ExportRecordsOptions = {}
): Stream.Stream<ExportRecord, ExportError, SqlClient.SqlClient> =>
  Stream.unwrap(Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rowPage = options.rowPageSize ?? 500
    const page = options.pageSize ?? 2_000
    const query = (what: string, text: string, params: ReadonlyArray<unknown>) =>
      sql.unsafe<DbRow>(text, params as Array<unknown>).pipe(Effect.mapError(dbError(what)))

    const emitted = { token: 0, node_state: 0, token_outcome: 0 }

    /** A whole small table of the run (nodes, edges): no paging needed beyond the run's graph. */
    const single = (type: RecordType, text: string) =>
      Stream.fromIterableEffect(Effect.flatMap(query(`reading ${RECORD_TABLES[type]}`, text, [runId]), (rows) => recordsOf(type, rows)))

    /** A table of the run paged by a single text key; `where` uses `?` for the run id only. */
    const byKey = (type: RecordType, key: string, where: string) =>
      paged<string>("", (last) =>
        Effect.gen(function*() {
          const runParams = Array.from({ length: where.split("?").length - 1 }, () => runId)
          const rows = yield* query(
            `reading ${RECORD_TABLES[type]}`,
            `SELECT * FROM ${RECORD_TABLES[type]} WHERE ${where} AND ${key} > ? ORDER BY ${key} LIMIT ${page}`,
            [...runParams, last]
          )
          const records = yield* recordsOf(type, rows)
          const tail = rows[rows.length - 1]
          return [records, rows.length < page || tail === undefined ? Option.none() : Option.some(String(tail[key]))] as const
        }))

    /** Members or outputs of the run's batches, paged by their primary key. */
    const batchLinks = (type: "batch_member" | "batch_output") =>
      paged<readonly [string, number, string]>(["", -1, ""], ([b, o, t]) =>
        Effect.gen(function*() {
          const table = RECORD_TABLES[type]
          const rows = yield* query(
            `reading ${table}`,
            `SELECT m.* FROM ${table} m JOIN batches b ON b.batch_id = m.batch_id
             WHERE b.run_id = ? AND (m.batch_id, m.ordinal, m.token_id) > (?, ?, ?)
             ORDER BY m.batch_id, m.ordinal, m.token_id LIMIT ${page}`,
            [runId, b, o, t]
          )
          const records = yield* recordsOf(type, rows)
          const tail = rows[rows.length - 1]
          return [
            records,
            rows.length < page || tail === undefined
              ? Option.none()
              : Option.some([String(tail.batch_id), Number(tail.ordinal), String(tail.token_id)] as const)
          ] as const
        }))

    /** Rows a page at a time, each followed by everything that happened to its tokens. */
    const perRow = paged<number>(-1, (lastIndex) =>
      Effect.gen(function*() {
        const rows = yield* query(
          "reading rows",
          `SELECT * FROM rows WHERE run_id = ? AND row_index > ? ORDER BY row_index LIMIT ${rowPage}`,
          [runId, lastIndex]
        )
        if (rows.length === 0) return [[], Option.none()] as const
        const lo = Number(rows[0]!.row_index)
        const hi = Number(rows[rows.length - 1]!.row_index)
        const inPage = `JOIN rows r ON r.row_id = t.row_id WHERE r.run_id = ? AND r.row_index BETWEEN ? AND ?`
        const params = [runId, lo, hi]
        const tokens = yield* query("reading tokens", `SELECT t.* FROM tokens t ${inPage} ORDER BY t.token_id`, params)
        const parents = yield* query(
          "reading token_parents",
          `SELECT p.* FROM token_parents p JOIN tokens t ON t.token_id = p.token_id ${inPage} ORDER BY p.token_id, p.ordinal, p.parent_token_id`,
          params
        )
        const states = yield* query(
          "reading node_states",
          `SELECT s.* FROM node_states s JOIN tokens t ON t.token_id = s.token_id ${inPage}
           ORDER BY s.token_id, s.step_index, s.attempt, s.started_at, s.state_id`,
          params
        )
        const events = yield* query(
          "reading routing_events",
          `SELECT e.* FROM routing_events e JOIN node_states s ON s.state_id = e.state_id JOIN tokens t ON t.token_id = s.token_id ${inPage}
           ORDER BY s.token_id, s.step_index, s.attempt, s.started_at, s.state_id, e.ordinal, e.event_id`,
          params
        )
        const outcomes = yield* query(
          "reading token_outcomes",
          `SELECT o.* FROM token_outcomes o JOIN tokens t ON t.token_id = o.token_id ${inPage}
           ORDER BY o.token_id, o.recorded_at, o.outcome_id`,
          params
        )
        emitted.token += tokens.length
        emitted.node_state += states.length
        emitted.token_outcome += outcomes.length

        // Group each table's page by row; every list keeps its query order.
        const rowOfToken = new Map<unknown, unknown>()
        for (const t of tokens) rowOfToken.set(t.token_id, t.row_id)
        const rowOfState = new Map<unknown, unknown>()
        for (const s of states) rowOfState.set(s.state_id, rowOfToken.get(s.token_id))
        const byRow = new Map<unknown, Array<Array<Record<string, unknown>>>>()
        for (const r of rows) byRow.set(r.row_id, [[], [], [], [], []])
        const place = (slot: number, rowId: unknown, record: Record<string, unknown>) => {
          const lists = byRow.get(rowId)
          if (lists === undefined) {
            throw new ExportError({ reason: "CorruptTrail", message: `a ${String(record.record_type)} of run ${runId} belongs to no row of this page` })
          }
          lists[slot]!.push(record)
        }
        const out: Array<Record<string, unknown>> = []
        yield* Effect.try({
          try: () => {
            for (const t of tokens) place(0, t.row_id, toRecord("token", t))
            for (const p of parents) place(1, rowOfToken.get(p.token_id), toRecord("token_parent", p))
            for (const s of states) place(2, rowOfToken.get(s.token_id), toRecord("node_state", s))
            for (const e of events) place(3, rowOfState.get(e.state_id), toRecord("routing_event", e))
            for (const o of outcomes) place(4, rowOfToken.get(o.token_id), toRecord("token_outcome", o))
            for (const r of rows) {
              out.push(toRecord("row", r))
              for (const list of byRow.get(r.row_id)!) for (const rec of list) out.push(rec)
            }
          },
          catch: (e) => e instanceof ExportError ? e : new ExportError({ reason: "CorruptTrail", message: String(e), cause: e })
        })
        return [out, rows.length < rowPage ? Option.none() : Option.some(hi)] as const
      }))

    /** Every token, state and outcome of the run was reached through its rows. */
    const completeness = Stream.fromEffect(Effect.gen(function*() {
      const checks: ReadonlyArray<readonly [keyof typeof emitted, string]> = [
        ["token", "SELECT COUNT(*) AS n FROM tokens WHERE run_id = ?"],
        ["node_state", "SELECT COUNT(*) AS n FROM node_states WHERE run_id = ?"],
        ["token_outcome", "SELECT COUNT(*) AS n FROM token_outcomes WHERE run_id = ?"]
      ]
      for (const [type, text] of checks) {
        const [row] = yield* query(`counting ${RECORD_TABLES[type]}`, text, [runId])
        const n = Number(row?.n ?? 0)
        if (n !== emitted[type]) {
          return yield* Effect.fail(
            new ExportError({
              reason: "Incomplete",
              message: `run ${runId} has ${n} ${RECORD_TABLES[type]} but only ${emitted[type]} belong to its rows; the trail is inconsistent`
            })
          )
        }
      }
    })).pipe(Stream.drain)

    const runRows = yield* query("reading the run", "SELECT * FROM runs WHERE run_id = ?", [runId])
    if (runRows.length === 0) {
      return Stream.fail(new ExportError({ reason: "Incomplete", message: `no run with id ${runId} in this Landscape` }))
    }
    const runRecord = yield* recordsOf("run", runRows)
    const payloads = options.includePayloads === true
      ? filesystemPayloadStore(
        payloadStoreOfRun(typeof runRows[0]!.settings_json === "string" ? runRows[0]!.settings_json : null, options.payloadDir, DEFAULT_PAYLOAD_BASE_PATH)
      )
      : undefined
    /** A call record with its bodies inline, when asked. */
    const withPayloads = (record: Record<string, unknown>): Record<string, unknown> => {
      if (payloads === undefined || record.record_type !== "call") return record
      const notes: Array<string> = []
      for (const part of ["request", "response"] as const) {
        const hash = record[`${part}_hash`]
        let text: string | null = null
        if (typeof hash === "string") {
          const got = payloads.get(hash)
          if (typeof got === "string") text = got
          else notes.push(`${part} ${got.reason === "NotFound" ? "payload purged" : got.message}`)
        }
        record[`${part}_payload`] = text
      }
      record.payload_note = notes.length === 0 ? null : notes.join("; ")
      return record
    }

    const all = Stream.fromIterable(runRecord).pipe(
      Stream.concat(single("node", "SELECT * FROM nodes WHERE run_id = ? ORDER BY sequence, node_id")),
      Stream.concat(single("edge", "SELECT * FROM edges WHERE run_id = ? ORDER BY edge_id")),
      Stream.concat(perRow),
      Stream.concat(completeness),
      Stream.concat(byKey("batch", "batch_id", "run_id = ?")),
      Stream.concat(batchLinks("batch_member")),
      Stream.concat(batchLinks("batch_output")),
      Stream.concat(byKey("artifact", "artifact_id", "run_id = ?")),
      Stream.concat(byKey("validation_error", "error_id", "run_id = ?")),
      Stream.concat(byKey("transform_error", "error_id", "run_id = ?")),
      Stream.concat(byKey("operation", "operation_id", "run_id = ?")),
      Stream.concat(
        byKey(
          "call",
          "call_id",
          `(state_id IN (SELECT state_id FROM node_states WHERE run_id = ?)
            OR operation_id IN (SELECT operation_id FROM operations WHERE run_id = ?))`
        ).pipe(Stream.map(withPayloads))
      )
    )
    return numbered(all)
  }))

/** Numbers the records of an export by their position, from 0. */
export const numbered = <E, R>(records: Stream.Stream<Record<string, unknown>, E, R>): Stream.Stream<ExportRecord, E, R> =>
  Stream.suspend(() => {
    let seq = 0
    return Stream.mapChunks(records, (chunk) =>
      Chunk.map(chunk, (record) => {
        record.seq = seq++
        return record as ExportRecord
      }))
  })

/** The columns of one table, in table order. */
export const columnsOf = (table: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.unsafe<{ name: string }>(`PRAGMA table_info(${quoteIdent(table)})`).pipe(
      Effect.map((cols) => cols.map((c) => c.name)),
      Effect.mapError(dbError(`reading the columns of ${table}`))
    ))

/** `"name"`, with embedded quotes doubled: a table name found in the schema, safe in SQL text. */
export const quoteIdent = (name: string): string => `"${name.replaceAll("\"", "\"\"")}"`

/** The columns of every table of a pipeline export, in table order (headers of empty CSV files). */
export const tableColumns = Effect.gen(function*() {
  const out = new Map<RecordType, ReadonlyArray<string>>()
  for (const type of RECORD_TYPES) out.set(type, yield* columnsOf(RECORD_TABLES[type]))
  return out as ReadonlyMap<RecordType, ReadonlyArray<string>>
})

/**
 * Registers an export's output as an artifact of the (finished) run. The Recorder
 * refuses records for runs that are no longer running, and the export happens after
 * the run is finalized, so this one row is written directly.
 */
export const recordExportArtifact = (input: {
  readonly runId: RunId
  readonly sinkNodeId: string
  readonly sinkName: string
  readonly artifactType: string
  readonly pathOrUri: string
  readonly contentHash: string
  readonly sizeBytes: number
}) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const at = new Date(yield* Clock.currentTimeMillis).toISOString()
    yield* sql`INSERT INTO artifacts ${
      sql.insert({
        artifact_id: newArtifactId(),
        run_id: input.runId,
        sink_node_id: input.sinkNodeId,
        sink_name: input.sinkName,
        artifact_type: input.artifactType,
        path_or_uri: input.pathOrUri,
        content_hash: input.contentHash,
        size_bytes: input.sizeBytes,
        created_at: at
      })
    }`.pipe(Effect.mapError(dbError(`recording the export artifact of run ${input.runId}`)))
  })
