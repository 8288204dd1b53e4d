/**
 * The SQL statements the SqlRecorder writes with: chunked multi-row INSERTs of audit
 * records, the UPDATEs of node states and batches written before they finished, and the
 * statements on the `runs` row itself.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import type { ExportStatusUpdate } from "../services/export-store.js"
import type { AuditRecord, BatchUpdate, NodeStateCompletion, RunStatus } from "../services/records.js"
import type { TableSpec } from "./tables.js"

type Sql = SqlClient.SqlClient

/** SQLite allows 32,766 parameters per statement; stay below it. */
const MAX_PARAMS = 32_000
/**
 * Rows per INSERT. Each distinct statement text is prepared and cached by the client,
 * and a large prepared statement costs memory: full chunks share one text, and a
 * remainder is split into powers of two, so a table needs at most ~9 texts.
 */
const MAX_ROWS_PER_STATEMENT = 256

const statementCache = new Map<string, string>()
const insertSql = (table: string, columns: ReadonlyArray<string>, rows: number): string => {
  const key = `${table}:${rows}`
  let text = statementCache.get(key)
  if (text === undefined) {
    const one = `(${columns.map(() => "?").join(",")})`
    text = `INSERT INTO ${table} (${columns.join(",")}) VALUES ${Array.from({ length: rows }, () => one).join(",")}`
    statementCache.set(key, text)
  }
  return text
}

/** Rows per statement for a table of `columns` columns. */
const rowsPerStatement = (columns: number) => Math.max(1, Math.min(MAX_ROWS_PER_STATEMENT, Math.floor(MAX_PARAMS / columns)))

/**
 * The parameters of a multi-row INSERT of `rows` rows, `width` values each, written
 * value by value into arrays of one statement each: call `row()` before each row's
 * values. (One statement's array is small enough for V8's young generation, and none
 * is copied on the way to SQLite.)
 */
export class RowParams {
  readonly chunks: Array<Array<unknown>> = []
  /** The array being filled, and where. */
  current: Array<unknown> = []
  p = 0
  private left: number
  private readonly perStatement: number

  constructor(readonly width: number, rows: number) {
    this.left = rows
    this.perStatement = rowsPerStatement(width)
  }

  /** Makes room for one more row. */
  row(): void {
    if (this.p < this.current.length) return
    const rows = Math.min(this.perStatement, this.left)
    this.left -= rows
    this.current = new Array(rows * this.width)
    this.chunks.push(this.current)
    this.p = 0
  }

  push(value: unknown): void {
    this.current[this.p++] = value
  }
}

/**
 * Inserts the rows of `params` into `table`: a full statement's array as it is, a
 * shorter one split into powers of two (so that few statement texts are prepared).
 */
export const insertRows = (sql: Sql, table: string, columns: ReadonlyArray<string>, params: RowParams) =>
  Effect.forEach(params.chunks, (chunk) => {
    const width = columns.length
    const count = chunk.length / width
    if (count === rowsPerStatement(width) || (count & (count - 1)) === 0) return sql.unsafe(insertSql(table, columns, count), chunk)
    return Effect.gen(function*() {
      for (let start = 0; start < count;) {
        const size = 2 ** Math.floor(Math.log2(count - start))
        yield* sql.unsafe(insertSql(table, columns, size), chunk.slice(start * width, (start + size) * width))
        start += size
      }
    })
  }, { discard: true })

/** Inserts `records` into the table of `spec`; a field a record lacks is stored NULL. */
export const insertRecords = (sql: Sql, spec: TableSpec, records: ReadonlyArray<AuditRecord>) =>
  Effect.suspend(() => {
    if (records.length === 0) return Effect.void
    const cols = spec.columns
    const params = new RowParams(cols.length, records.length)
    for (const record of records) {
      const rec = record as unknown as Record<string, unknown>
      params.row()
      for (const col of cols) {
        const v = rec[col]
        params.push(v === undefined ? null : v)
      }
    }
    return insertRows(sql, spec.table, cols, params)
  })

/** Completes a node state written open; false when there is no such open state. */
export const completeNodeState = (sql: Sql, u: NodeStateCompletion): Effect.Effect<boolean, SqlError> =>
  Effect.map(
    sql.unsafe<{ state_id: string }>(
      `UPDATE ls_node_states SET status = ?, output_hash = ?, duration_ms = ?, error_json = ?, completed_at = ?
       WHERE state_id = ? AND status = 'open' RETURNING state_id`,
      [u.status, u.output_hash, u.duration_ms, u.error_json, u.completed_at, u.state_id]
    ),
    (rows) => rows.length > 0
  )

/** Updates a written batch, keeping what `u` leaves null; false when there is no such batch. */
export const updateBatch = (sql: Sql, u: BatchUpdate): Effect.Effect<boolean, SqlError> =>
  Effect.map(
    sql.unsafe<{ batch_id: string }>(
      `UPDATE batches SET status = ?, trigger_type = COALESCE(?, trigger_type), trigger_reason = COALESCE(?, trigger_reason),
         error_json = COALESCE(?, error_json), completed_at = COALESCE(?, completed_at)
       WHERE batch_id = ? RETURNING batch_id`,
      [u.status, u.trigger_type, u.trigger_reason, u.error_json, u.completed_at, u.batch_id]
    ),
    (rows) => rows.length > 0
  )

/** Which of `tokenIds` already have a terminal outcome in the database. */
export const tokensWithTerminalOutcome = (sql: Sql, tokenIds: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const found: Array<string> = []
    for (let i = 0; i < tokenIds.length; i += 500) {
      const chunk = tokenIds.slice(i, i + 500)
      const rows = yield* sql.unsafe<{ token_id: string }>(
        `SELECT token_id FROM token_outcomes WHERE is_terminal = 1 AND token_id IN (${chunk.map(() => "?").join(",")})`,
        chunk
      )
      for (const r of rows) found.push(r.token_id)
    }
    return found
  })

export interface RunRow {
  readonly run_id: string
  readonly started_at: string
  readonly config_hash: string
  readonly settings_json: string
  readonly canonical_version: string
  readonly source_schema_json: string | null
  readonly owner_pid: number
  readonly owner_host: string
}

/** The `runs` row of a run that starts now, and its first attempt. */
export const insertRun = (sql: Sql, run: RunRow) =>
  sql.withTransaction(Effect.gen(function*() {
    yield* sql`INSERT INTO runs ${sql.insert({ ...run, status: "running" })}`
    yield* sql`INSERT INTO run_attempts ${
      sql.insert({
        run_id: run.run_id,
        attempt: 1,
        kind: "started",
        status: "running",
        reason: null,
        started_at: run.started_at,
        ended_at: null,
        owner_pid: run.owner_pid,
        owner_host: run.owner_host,
        from_checkpoint: null
      })
    }`
  }))

/**
 * Ends a run in one transaction: node states and operations still open are closed as
 * failed (a run that stopped mid-row leaves none open), then the run gets its status.
 */
export const closeRun = (
  sql: Sql,
  runId: string,
  end: {
    readonly status: Exclude<RunStatus, "running">
    readonly at: string
    readonly errorMessage: string | null
    readonly resultJson: string | null
    readonly reason: string | null
  }
) =>
  sql.withTransaction(
    Effect.gen(function*() {
      yield* sql`UPDATE ls_node_states SET status = 'failed', completed_at = ${end.at},
                   error_json = ${JSON.stringify({ reason: `run ${end.status}` })}
                 WHERE run_key = (SELECT run_key FROM runs WHERE run_id = ${runId}) AND status = 'open'`
      yield* sql`UPDATE operations SET status = 'failed', completed_at = ${end.at}, error_message = ${`run ${end.status}`}
                 WHERE run_id = ${runId} AND status = 'open'`
      yield* sql`UPDATE runs SET status = ${end.status}, completed_at = ${end.at},
                   error_message = ${end.errorMessage}, result_json = ${end.resultJson}, status_reason = ${end.reason}
                 WHERE run_id = ${runId}`
      // The attempt this process is running ends with the run.
      yield* sql`UPDATE run_attempts SET status = ${end.status}, ended_at = ${end.at}, reason = ${end.reason ?? end.errorMessage}
                 WHERE run_id = ${runId} AND status = 'running'`
    })
  )

/** Stores the export state of a run; a field `update` leaves out keeps its value (the error is cleared). */
export const updateExportStatus = (sql: Sql, runId: string, update: ExportStatusUpdate) =>
  sql`UPDATE runs SET export_status = ${update.export_status},
        export_error = ${update.export_error ?? null},
        export_format = COALESCE(${update.export_format ?? null}, export_format),
        export_sink = COALESCE(${update.export_sink ?? null}, export_sink),
        exported_at = COALESCE(${update.exported_at ?? null}, exported_at)
      WHERE run_id = ${runId}`
