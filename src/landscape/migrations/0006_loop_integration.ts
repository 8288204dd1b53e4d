import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"

/**
 * Loop integration and resume: a loop run names its integration branch, how issues
 * are merged into it and where it stands; the base it started from (what run_end's
 * review compares against); how many times it was started (1, then +1 per resume).
 * An issue records the integration head its merge produced.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const statements = [
    `ALTER TABLE loop_runs ADD COLUMN base_sha TEXT`,
    `ALTER TABLE loop_runs ADD COLUMN integration_strategy TEXT`,
    `ALTER TABLE loop_runs ADD COLUMN integration_branch TEXT`,
    `ALTER TABLE loop_runs ADD COLUMN integration_head TEXT`,
    `ALTER TABLE loop_runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1`,
    `ALTER TABLE loop_runs ADD COLUMN resumed_at TEXT`,
    `ALTER TABLE loop_issues ADD COLUMN integration_sha TEXT`
  ]
  for (const statement of statements) yield* sql.unsafe(statement)
})
