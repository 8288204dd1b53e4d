import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"

/**
 * A loop run records where its export stands with the same columns a pipeline run
 * has (`runs.export_*`): status (pending, completed, failed), error, format, sink and
 * time.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const statements = [
    `ALTER TABLE loop_runs ADD COLUMN export_status TEXT CHECK (export_status IS NULL OR export_status IN ('pending', 'completed', 'failed'))`,
    `ALTER TABLE loop_runs ADD COLUMN export_error TEXT`,
    `ALTER TABLE loop_runs ADD COLUMN export_format TEXT`,
    `ALTER TABLE loop_runs ADD COLUMN export_sink TEXT`,
    `ALTER TABLE loop_runs ADD COLUMN exported_at TEXT`
  ]
  for (const statement of statements) yield* sql.unsafe(statement)
})
