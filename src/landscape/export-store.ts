/**
 * The ExportStore over the SQLite Landscape: a pipeline run's trail comes from the
 * exporter's paged queries, a loop run's from loop-export.ts; the run and its export
 * columns from `runs` or `loop_runs`. Part of `SqliteLandscape`, next to the Recorder
 * on the same connection.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Layer, Stream } from "effect"
import type { RunId } from "../core/ids.js"
import { ExportError, ExportStore, type ExportStoreService, type RunKind } from "../services/export-store.js"
import { Recorder, RecorderError } from "../services/recorder.js"
import type { RunStatus } from "../services/records.js"
import { exportRecords, recordExportArtifact, tableColumns } from "./exporter.js"
import { exportLoopRecords, loopTableColumns } from "./loop-export.js"

const missingRun = (runId: string) =>
  new RecorderError({ reason: "MissingRun", message: `no run with id ${runId} in this Landscape (no pipeline run and no loop run has it)` })

const fromSql = (what: string) => (error: SqlError): RecorderError => {
  const text = String((error.cause as { message?: unknown } | undefined)?.message ?? error.message)
  const reason = /constraint/i.test(text) ? "ConstraintViolation" : "Database"
  return new RecorderError({ reason, message: `${what}: ${text}`, cause: error })
}

export const makeSqlExportStore = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const recorder = yield* Recorder
  const provideSql = Effect.provideService(SqlClient.SqlClient, sql)

  /** The run's kind and status: `runs` first, then `loop_runs`; none when neither has it. */
  const readRun = (runId: string) =>
    sql<{ kind: RunKind; status: RunStatus }>`
      SELECT 'pipeline' AS kind, status FROM runs WHERE run_id = ${runId}
      UNION ALL
      SELECT 'loop' AS kind, status FROM loop_runs WHERE run_id = ${runId}`.pipe(
      Effect.map((rows) => rows[0]),
      Effect.mapError(fromSql("reading run"))
    )

  const resolveRunId = (idOrLatest: string): Effect.Effect<RunId, RecorderError> =>
    idOrLatest === "latest"
      ? sql<{ run_id: RunId }>`
          SELECT run_id, started_at FROM runs
          UNION ALL
          SELECT run_id, started_at FROM loop_runs
          ORDER BY started_at DESC, run_id DESC LIMIT 1`.pipe(
        Effect.mapError(fromSql("finding the latest run")),
        Effect.flatMap((rows) =>
          rows[0] === undefined
            ? Effect.fail(new RecorderError({ reason: "MissingRun", message: `this Landscape has no runs yet` }))
            : Effect.succeed(rows[0].run_id)
        )
      )
      : Effect.flatMap(readRun(idOrLatest), (row) => row === undefined ? Effect.fail(missingRun(idOrLatest)) : Effect.succeed(idOrLatest as RunId))

  const service: ExportStoreService = {
    findRun: Effect.fn("ExportStore.findRun")(function*(idOrLatest) {
      const runId = yield* resolveRunId(idOrLatest)
      yield* recorder.flush
      const row = yield* readRun(runId)
      if (row === undefined) return yield* Effect.fail(missingRun(runId))
      return { runId, kind: row.kind, status: row.status }
    }),

    records: (runId, options) =>
      Stream.unwrap(
        readRun(runId).pipe(
          Effect.mapError((e) => new ExportError({ reason: "Database", message: e.message, cause: e })),
          Effect.map((row) => row?.kind === "loop" ? exportLoopRecords(runId, options) : exportRecords(runId, options))
        )
      ).pipe(Stream.provideService(SqlClient.SqlClient, sql)),

    columns: (kind) => (kind === "loop" ? loopTableColumns : tableColumns).pipe(provideSql),

    recordArtifact: (artifact) => recordExportArtifact(artifact).pipe(provideSql),

    setExportStatus: Effect.fn("ExportStore.setExportStatus")(function*(runId, update) {
      const row = yield* readRun(runId)
      if (row === undefined) return yield* Effect.fail(missingRun(runId))
      const table = sql(row.kind === "loop" ? "loop_runs" : "runs")
      yield* sql`UPDATE ${table} SET export_status = ${update.export_status},
                   export_error = ${update.export_error ?? null},
                   export_format = COALESCE(${update.export_format ?? null}, export_format),
                   export_sink = COALESCE(${update.export_sink ?? null}, export_sink),
                   exported_at = COALESCE(${update.exported_at ?? null}, exported_at)
                 WHERE run_id = ${runId}`.pipe(Effect.mapError(fromSql(`recording export of run ${runId}`)))
    })
  }
  return service
})

/** The ExportStore over whatever `SqlClient` and Recorder are provided (the Recorder for its flush). */
export const SqlExportStoreLive = Layer.effect(ExportStore, makeSqlExportStore)
