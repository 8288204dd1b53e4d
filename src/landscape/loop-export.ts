/**
 * The export of an issue-loop run: the same records, envelope, signing and formats as
 * a pipeline export (exporter.ts), over the loop tables.
 *
 * Order: the run (`loop_run`); then issue by issue in the order the run listed them —
 * the issue (`loop_issue`), each of its stages (`stage_result`, by start) followed by
 * the commands run in it (`command_result`, by start), then the issue's commands
 * outside a recorded stage; then the run's own stages (run_end, and any stage not tied
 * to one of its issues) with their commands; then every further table of loop data.
 *
 * Records are whole rows (`SELECT *`), so a column added by a later migration is
 * exported without a change here. So is a table: any table outside the pipeline's that
 * has a `run_id` column, or a one-column foreign key into a loop table that has one,
 * is exported with the run's rows of it, as record type "its name in the singular"
 * (`loop_processes` → `loop_process`), tables in name order, rows in insertion order.
 *
 * A command record also carries the SHA-256 and size of its log file as it is when
 * exported (`log_file_sha256`, `log_file_bytes`; null when the command had no log file
 * or it is gone), and its whole text (`log_file_text`) only when asked for.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Option, Stream } from "effect"
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import type { RunId } from "../core/ids.js"
import {
  ExportError,
  type ExportRecord,
  type ExportRecordsOptions,
  LOOP_RECORD_TYPES,
  type LoopRecordType,
  RECORD_TYPES
} from "../services/export-store.js"
import {
  columnsOf,
  type DbRow,
  dbError,
  numbered,
  paged,
  quoteIdent,
  RECORD_TABLES,
  rowToRecord,
  tryRecords
} from "./exporter.js"

/** The table each fixed record type of a loop export comes from. */
export const LOOP_RECORD_TABLES = {
  loop_run: "loop_runs",
  loop_issue: "loop_issues",
  stage_result: "stage_results",
  command_result: "command_results"
} as const satisfies Record<LoopRecordType, string>

/** Keys a loop export adds to every command record, after the row's columns. */
export const COMMAND_LOG_KEYS: ReadonlyArray<string> = ["log_file_sha256", "log_file_bytes"]
/** The key of a command's inlined log text (only with `includeLogs`). */
export const COMMAND_LOG_TEXT_KEY = "log_file_text"

/** Tables of the pipeline trail and engine state: never part of a loop export. */
const PIPELINE_TABLES: ReadonlyArray<string> = [...Object.values(RECORD_TABLES), "runs", "checkpoints", "run_attempts"]

/** A further table of loop data, as the export reads it. */
export interface LoopExtraTable {
  readonly table: string
  readonly recordType: string
  /** SQL condition selecting the run's rows; every `?` is the run id. */
  readonly where: string
  /** Rows are keyset-paged by rowid; a WITHOUT ROWID table is ordered by its key and read whole. */
  readonly order: { readonly _tag: "Rowid" } | { readonly _tag: "Key"; readonly columns: ReadonlyArray<string> }
  readonly columns: ReadonlyArray<string>
}

/** `loop_processes` → `loop_process`, `stage_results` → `stage_result`, `loop_entries` → `loop_entry`. */
export const singular = (table: string): string =>
  /(ss|sh|ch|x)es$/.test(table)
    ? table.slice(0, -2)
    : /ies$/.test(table)
    ? `${table.slice(0, -3)}y`
    : /(us|ss|is)$/.test(table) || !table.endsWith("s")
    ? table
    : table.slice(0, -1)

interface TableInfo {
  readonly name: string
  readonly withoutRowid: boolean
  readonly columns: ReadonlyArray<{ readonly name: string; readonly pk: number }>
  readonly foreignKeys: ReadonlyArray<{ readonly id: number; readonly seq: number; readonly table: string; readonly from: string; readonly to: string | null }>
}

/** Every table of the schema with its columns and foreign keys, by name. */
const schemaTables = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const tables = yield* sql<{ name: string; sql: string | null }>`SELECT name, sql FROM sqlite_master
    WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`.pipe(Effect.mapError(dbError("reading the schema")))
  const out: Array<TableInfo> = []
  for (const t of tables) {
    const columns = yield* sql.unsafe<{ name: string; pk: number }>(`PRAGMA table_info(${quoteIdent(t.name)})`).pipe(
      Effect.mapError(dbError(`reading the columns of ${t.name}`))
    )
    const foreignKeys = yield* sql.unsafe<TableInfo["foreignKeys"][number]>(`PRAGMA foreign_key_list(${quoteIdent(t.name)})`).pipe(
      Effect.mapError(dbError(`reading the foreign keys of ${t.name}`))
    )
    out.push({ name: t.name, withoutRowid: /without\s+rowid/i.test(t.sql ?? ""), columns, foreignKeys })
  }
  return out
})

/**
 * The tables of loop data beyond the four fixed ones: every table that is not part of
 * the pipeline trail (nor refers to it) and holds rows of a loop run, by its own
 * `run_id` or through a one-column foreign key into a loop table that has one.
 */
export const loopExtraTables: Effect.Effect<ReadonlyArray<LoopExtraTable>, ExportError, SqlClient.SqlClient> = Effect.gen(
  function*() {
    const tables = yield* schemaTables
    const pipeline = new Set(PIPELINE_TABLES)
    for (let grew = true; grew;) {
      grew = false
      for (const t of tables) {
        if (!pipeline.has(t.name) && t.foreignKeys.some((fk) => pipeline.has(fk.table))) {
          pipeline.add(t.name)
          grew = true
        }
      }
    }
    const fixed = new Set<string>(Object.values(LOOP_RECORD_TABLES))
    const hasRunId = new Set(tables.filter((t) => t.columns.some((c) => c.name === "run_id")).map((t) => t.name))
    const taken = new Set<string>([...RECORD_TYPES, ...LOOP_RECORD_TYPES, "manifest"])
    const out: Array<LoopExtraTable> = []
    for (const t of tables) {
      if (pipeline.has(t.name) || fixed.has(t.name)) continue
      let where: string | undefined
      if (hasRunId.has(t.name)) where = `run_id = ?`
      else {
        const single = t.foreignKeys.find((fk) =>
          fk.to !== null && (fixed.has(fk.table) || hasRunId.has(fk.table)) && !pipeline.has(fk.table) &&
          t.foreignKeys.filter((other) => other.id === fk.id).length === 1
        )
        if (single !== undefined) {
          where = `${quoteIdent(single.from)} IN (SELECT ${quoteIdent(single.to!)} FROM ${quoteIdent(single.table)} WHERE run_id = ?)`
        }
      }
      if (where === undefined) continue
      const name = singular(t.name)
      const recordType = taken.has(name) ? t.name : name
      if (taken.has(recordType)) {
        return yield* Effect.fail(
          new ExportError({ reason: "CorruptTrail", message: `table ${t.name} would export as record type ${recordType}, which another table already has` })
        )
      }
      taken.add(recordType)
      const key = t.columns.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk).map((c) => c.name)
      out.push({
        table: t.name,
        recordType,
        where,
        order: t.withoutRowid ? { _tag: "Key", columns: key.length > 0 ? key : t.columns.map((c) => c.name) } : { _tag: "Rowid" },
        columns: t.columns.map((c) => c.name)
      })
    }
    return out
  }
)

/** The record types of a loop export, in export order, each with its columns (CSV headers). */
export const loopTableColumns = Effect.gen(function*() {
  const out = new Map<string, ReadonlyArray<string>>()
  for (const type of LOOP_RECORD_TYPES) {
    const cols = yield* columnsOf(LOOP_RECORD_TABLES[type])
    out.set(type, type === "command_result" ? [...cols, ...COMMAND_LOG_KEYS] : cols)
  }
  for (const extra of yield* loopExtraTables) out.set(extra.recordType, extra.columns)
  return out as ReadonlyMap<string, ReadonlyArray<string>>
})

/** SHA-256 and size of a file, read a megabyte at a time; undefined when it is not a readable file. */
export const hashFile = (path: string): { readonly sha256: string; readonly bytes: number } | undefined => {
  let fd: number
  try {
    if (!NodeFs.statSync(path).isFile()) return undefined
    fd = NodeFs.openSync(path, "r")
  } catch {
    return undefined
  }
  try {
    const hash = createHash("sha256")
    const buf = Buffer.alloc(1 << 20)
    let bytes = 0
    for (let n = NodeFs.readSync(fd, buf, 0, buf.length, null); n > 0; n = NodeFs.readSync(fd, buf, 0, buf.length, null)) {
      hash.update(buf.subarray(0, n))
      bytes += n
    }
    return { sha256: hash.digest("hex"), bytes }
  } finally {
    NodeFs.closeSync(fd)
  }
}

/** Adds the log file's hash and size (and text, when asked) to a command record. */
const withLog = (record: Record<string, unknown>, runDir: string, includeLogs: boolean): Record<string, unknown> => {
  for (const key of [...COMMAND_LOG_KEYS, COMMAND_LOG_TEXT_KEY]) {
    if (Object.hasOwn(record, key)) {
      throw new ExportError({ reason: "CorruptTrail", message: `table command_results has a column named ${key}, which the loop export adds` })
    }
  }
  const logFile = typeof record.log_file === "string" && record.log_file !== "" ? NodePath.resolve(runDir, record.log_file) : undefined
  const file = logFile === undefined ? undefined : hashFile(logFile)
  record.log_file_sha256 = file?.sha256 ?? null
  record.log_file_bytes = file?.bytes ?? null
  if (includeLogs) {
    let text: string | null = null
    if (file !== undefined) {
      try {
        text = NodeFs.readFileSync(logFile!, "utf8")
      } catch {
        text = null
      }
    }
    record[COMMAND_LOG_TEXT_KEY] = text
  }
  return record
}

/** Issues read per page; the stages and commands of a page come in two more queries. */
const ISSUE_PAGE = 200
/** Rows of a further table read per page. */
const EXTRA_PAGE = 2_000
const ROWID = "__export_rowid"

/** A stage followed by its commands, in their order; commands of no listed stage last. */
const nest = (
  stages: ReadonlyArray<DbRow>,
  commands: ReadonlyArray<DbRow>,
  command: (row: DbRow) => Record<string, unknown>
): Array<Record<string, unknown>> => {
  const byStage = new Map<unknown, Array<DbRow>>()
  for (const s of stages) byStage.set(s.stage_id, [])
  const loose: Array<DbRow> = []
  for (const c of commands) (byStage.get(c.stage_id) ?? loose).push(c)
  const out: Array<Record<string, unknown>> = []
  for (const s of stages) {
    out.push(rowToRecord("stage_result", "stage_results", s))
    for (const c of byStage.get(s.stage_id)!) out.push(command(c))
  }
  for (const c of loose) out.push(command(c))
  return out
}

/** The loop run's trail in export order, numbered by `seq`. Fails `Incomplete` when there is no such loop run. */
export const exportLoopRecords = (
  runId: RunId,
  options: ExportRecordsOptions = {}
): Stream.Stream<ExportRecord, ExportError, SqlClient.SqlClient> =>
  Stream.unwrap(Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const query = (what: string, text: string, params: ReadonlyArray<unknown>) =>
      sql.unsafe<DbRow>(text, params as Array<unknown>).pipe(Effect.mapError(dbError(what)))

    const runRows = yield* query("reading the loop run", `SELECT * FROM loop_runs WHERE run_id = ?`, [runId])
    const runRow = runRows[0]
    if (runRow === undefined) {
      return Stream.fail(new ExportError({ reason: "Incomplete", message: `no loop run with id ${runId} in this Landscape` }))
    }
    const runDir = typeof runRow.run_dir === "string" ? runRow.run_dir : process.cwd()
    const command = (row: DbRow) => withLog(rowToRecord("command_result", "command_results", row), runDir, options.includeLogs === true)
    const runRecord = yield* tryRecords(() => rowToRecord("loop_run", "loop_runs", runRow))

    /** Issues a page at a time, each followed by its stages and commands. */
    const perIssue = paged<number>(-1, (lastRowid) =>
      Effect.gen(function*() {
        const issues = yield* query(
          "reading loop_issues",
          `SELECT rowid AS ${ROWID}, * FROM loop_issues WHERE run_id = ? AND rowid > ? ORDER BY rowid LIMIT ${ISSUE_PAGE}`,
          [runId, lastRowid]
        )
        if (issues.length === 0) return [[], Option.none()] as const
        const ids = issues.map((i) => i.issue_id)
        const marks = ids.map(() => "?").join(", ")
        const stages = yield* query(
          "reading stage_results",
          `SELECT * FROM stage_results WHERE run_id = ? AND issue_id IN (${marks}) ORDER BY started_at, rowid`,
          [runId, ...ids]
        )
        const commands = yield* query(
          "reading command_results",
          `SELECT * FROM command_results WHERE run_id = ? AND issue_id IN (${marks}) ORDER BY started_at, rowid`,
          [runId, ...ids]
        )
        const last = Number(issues[issues.length - 1]![ROWID])
        const records = yield* tryRecords(() => {
          const out: Array<Record<string, unknown>> = []
          for (const issue of issues) {
            const { [ROWID]: _rowid, ...row } = issue
            out.push(rowToRecord("loop_issue", "loop_issues", row))
            out.push(...nest(
              stages.filter((s) => s.issue_id === row.issue_id),
              commands.filter((c) => c.issue_id === row.issue_id),
              command
            ))
          }
          return out
        })
        return [records, issues.length < ISSUE_PAGE ? Option.none() : Option.some(last)] as const
      }))

    /** The run's own stages and commands: no issue, or an issue the run does not list. */
    const runLevel = Stream.fromIterableEffect(Effect.gen(function*() {
      const notAnIssue = `(issue_id IS NULL OR issue_id NOT IN (SELECT issue_id FROM loop_issues WHERE run_id = ?))`
      const stages = yield* query(
        "reading stage_results",
        `SELECT * FROM stage_results WHERE run_id = ? AND ${notAnIssue} ORDER BY started_at, rowid`,
        [runId, runId]
      )
      const commands = yield* query(
        "reading command_results",
        `SELECT * FROM command_results WHERE run_id = ? AND ${notAnIssue} ORDER BY started_at, rowid`,
        [runId, runId]
      )
      return yield* tryRecords(() => nest(stages, commands, command))
    }))

    const extraTable = (extra: LoopExtraTable): Stream.Stream<Record<string, unknown>, ExportError> => {
      const what = `reading ${extra.table}`
      const runParams = Array.from({ length: extra.where.split("?").length - 1 }, () => runId)
      const from = `FROM ${quoteIdent(extra.table)} WHERE ${extra.where}`
      if (extra.order._tag === "Key") {
        const text = `SELECT * ${from} ORDER BY ${extra.order.columns.map(quoteIdent).join(", ")}`
        return Stream.fromIterableEffect(
          Effect.flatMap(query(what, text, runParams), (rows) => tryRecords(() => rows.map((r) => rowToRecord(extra.recordType, extra.table, r))))
        )
      }
      return paged<number>(-1, (lastRowid) =>
        Effect.gen(function*() {
          const rows = yield* query(
            what,
            `SELECT rowid AS ${ROWID}, * ${from} AND rowid > ? ORDER BY rowid LIMIT ${EXTRA_PAGE}`,
            [...runParams, lastRowid]
          )
          const records = yield* tryRecords(() =>
            rows.map((r) => {
              const { [ROWID]: _rowid, ...row } = r
              return rowToRecord(extra.recordType, extra.table, row)
            })
          )
          const tail = rows[rows.length - 1]
          return [records, rows.length < EXTRA_PAGE || tail === undefined ? Option.none() : Option.some(Number(tail[ROWID]))] as const
        })
      )
    }

    const extras = yield* loopExtraTables
    const all = Stream.make(runRecord).pipe(
      Stream.concat(perIssue),
      Stream.concat(runLevel),
      Stream.concat(Stream.flatMap(Stream.fromIterable(extras), extraTable))
    )
    return numbered(all)
  }))
