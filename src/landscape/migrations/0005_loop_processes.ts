import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"

/**
 * The process group of every supervised loop command, written `running` when the
 * command starts and `ended` when its group is gone. After a crash of runledger the
 * rows still `running` name the groups that may have survived it: the command that next
 * opens the Landscape kills what is left of them (only processes carrying the command's
 * RUNLEDGER_COMMAND_ID, so a reused group number is never touched), records each such
 * command in command_results and marks the row `reaped` with how many processes it
 * found alive.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const statements = [
    `CREATE TABLE loop_processes (
      process_id TEXT PRIMARY KEY,
      run_id TEXT NOT NULL REFERENCES loop_runs(run_id),
      issue_id TEXT,
      stage TEXT NOT NULL,
      ref TEXT NOT NULL,
      command TEXT NOT NULL,
      log_file TEXT,
      pgid INTEGER NOT NULL,
      status TEXT NOT NULL CHECK (status IN ('running', 'ended', 'reaped')),
      started_at TEXT NOT NULL,
      ended_at TEXT,
      survivors INTEGER,
      CHECK ((status = 'running') = (ended_at IS NULL))
    )`,
    `CREATE INDEX loop_processes_running ON loop_processes (run_id) WHERE status = 'running'`
  ]
  for (const statement of statements) yield* sql.unsafe(statement)
})
