import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"

/**
 * Crash-consistent runs: every attempt at a run (the first start and each resume) is
 * a row of its own with its process, times and how it ended; a run's status carries a
 * reason (`process_crash` when the owning process died); a checkpoint carries the
 * whole state a resume restarts from.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const statements = [
    `ALTER TABLE runs ADD COLUMN status_reason TEXT`,
    `CREATE TABLE run_attempts (
      run_id TEXT NOT NULL REFERENCES runs (run_id),
      attempt INTEGER NOT NULL CHECK (attempt >= 1),
      kind TEXT NOT NULL CHECK (kind IN ('started', 'resumed')),
      status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'interrupted')),
      reason TEXT,
      started_at TEXT NOT NULL,
      ended_at TEXT,
      owner_pid INTEGER,
      owner_host TEXT,
      from_checkpoint INTEGER,
      PRIMARY KEY (run_id, attempt)
    )`,
    `ALTER TABLE checkpoints ADD COLUMN state_json TEXT`,
    `ALTER TABLE checkpoints ADD COLUMN attempt INTEGER`
  ]
  for (const statement of statements) yield* sql.unsafe(statement)
})
