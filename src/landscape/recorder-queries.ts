/**
 * The read side of the Recorder port: runs as `RunView`s with their counts, the latest
 * run, and a run's status. Each is a fixed number of queries, whatever the run's size.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"
import type { RunId } from "../core/ids.js"
import { RecorderError, type RunView } from "../services/recorder.js"
import type { Outcome, RunStatus } from "../services/records.js"
import { fromSql, missingRun } from "./recorder-errors.js"

type Sql = SqlClient.SqlClient

const readRun = (sql: Sql, runId: string) =>
  sql<Record<string, unknown>>`SELECT * FROM runs WHERE run_id = ${runId}`.pipe(Effect.mapError(fromSql("reading run")))

/** The status of a run; undefined when the Landscape has no such run. */
export const runStatusOf = (sql: Sql, runId: string) =>
  sql<{ status: RunStatus }>`SELECT status FROM runs WHERE run_id = ${runId}`.pipe(
    Effect.mapError(fromSql("reading run")),
    Effect.map((rows) => rows[0]?.status)
  )

/** Fails with MissingRun unless the Landscape has the run. */
export const requireRun = (sql: Sql, runId: string): Effect.Effect<void, RecorderError> =>
  Effect.flatMap(readRun(sql, runId), (rows) => (rows.length === 0 ? Effect.fail(missingRun(runId)) : Effect.void))

const toView = (
  row: Record<string, unknown>,
  rows: number,
  outcomes: Partial<Record<Outcome, number>>
): RunView => ({
  run_id: row.run_id as RunId,
  status: row.status as RunStatus,
  started_at: row.started_at as string,
  completed_at: (row.completed_at as string | null) ?? null,
  config_hash: row.config_hash as string,
  canonical_version: row.canonical_version as string,
  error_message: (row.error_message as string | null) ?? null,
  status_reason: (row.status_reason as string | null) ?? null,
  export_status: (row.export_status as RunView["export_status"]) ?? null,
  export_error: (row.export_error as string | null) ?? null,
  export_format: (row.export_format as string | null) ?? null,
  export_sink: (row.export_sink as string | null) ?? null,
  exported_at: (row.exported_at as string | null) ?? null,
  result: typeof row.result_json === "string" ? JSON.parse(row.result_json) : null,
  counts: { rows, outcomes }
})

/**
 * Rows read and terminal outcomes by kind, per run (of one run, or of all), counted in
 * the compact tables by run key: no join to the ids the views add. A terminal outcome
 * is one that is not BUFFERED (the schema ties the two), which the (run, outcome)
 * index answers alone.
 */
const countsFor = (sql: Sql, runId: string | undefined) =>
  Effect.gen(function*() {
    const rowCounts = yield* (runId === undefined
      ? sql<{ run_id: string; n: number }>`
          SELECT u.run_id, COUNT(*) AS n FROM ls_rows r JOIN runs u ON u.run_key = r.run_key GROUP BY r.run_key`
      : sql<{ run_id: string; n: number }>`
          SELECT u.run_id, COUNT(*) AS n FROM ls_rows r JOIN runs u ON u.run_key = r.run_key
          WHERE u.run_id = ${runId} GROUP BY r.run_key`)
    const outcomeCounts = yield* (runId === undefined
      ? sql<{ run_id: string; outcome: Outcome; n: number }>`
          SELECT u.run_id, o.outcome, COUNT(*) AS n FROM ls_token_outcomes o JOIN runs u ON u.run_key = o.run_key
          WHERE o.outcome <> 'BUFFERED' GROUP BY o.run_key, o.outcome`
      : sql<{ run_id: string; outcome: Outcome; n: number }>`
          SELECT u.run_id, o.outcome, COUNT(*) AS n FROM ls_token_outcomes o JOIN runs u ON u.run_key = o.run_key
          WHERE u.run_id = ${runId} AND o.outcome <> 'BUFFERED' GROUP BY o.run_key, o.outcome`)
    const rows = new Map(rowCounts.map((r) => [r.run_id, r.n]))
    const outcomes = new Map<string, Partial<Record<Outcome, number>>>()
    for (const r of outcomeCounts) {
      const m = outcomes.get(r.run_id) ?? {}
      m[r.outcome] = r.n
      outcomes.set(r.run_id, m)
    }
    return { rows, outcomes }
  }).pipe(Effect.mapError(fromSql("counting outcomes")))

/** Every run, oldest first. */
export const listRuns = (sql: Sql) =>
  Effect.gen(function*() {
    const runs = yield* sql<Record<string, unknown>>`SELECT * FROM runs ORDER BY started_at, run_id`.pipe(
      Effect.mapError(fromSql("listing runs"))
    )
    const { outcomes, rows } = yield* countsFor(sql, undefined)
    return runs.map((r) => toView(r, rows.get(r.run_id as string) ?? 0, outcomes.get(r.run_id as string) ?? {}))
  })

export const getRun = (sql: Sql, runId: RunId) =>
  Effect.gen(function*() {
    const [row] = yield* readRun(sql, runId)
    if (row === undefined) {
      return yield* Effect.fail(missingRun(runId))
    }
    const counts = yield* countsFor(sql, runId)
    return toView(row, counts.rows.get(runId) ?? 0, counts.outcomes.get(runId) ?? {})
  })

/** `latest` → the most recently started run; otherwise checks that the id exists. */
export const resolveRunId = (sql: Sql, idOrLatest: string) =>
  Effect.gen(function*() {
    if (idOrLatest === "latest") {
      const rows = yield* sql<{ run_id: RunId }>`SELECT run_id FROM runs ORDER BY started_at DESC, run_id DESC LIMIT 1`.pipe(
        Effect.mapError(fromSql("finding the latest run"))
      )
      const first = rows[0]
      if (first === undefined) {
        return yield* Effect.fail(new RecorderError({ reason: "MissingRun", message: `this Landscape has no runs yet` }))
      }
      return first.run_id
    }
    yield* requireRun(sql, idOrLatest)
    return idOrLatest as RunId
  })
