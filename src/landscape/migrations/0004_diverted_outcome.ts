import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"

/**
 * A sink's `on_write_failure`: a row the sink cannot write ends DIVERTED (to its
 * failsink, or discarded). SQLite cannot change a CHECK constraint in place, so
 * `token_outcomes` is rebuilt with the new value allowed — same columns, same rows,
 * same indexes. No table references `token_outcomes`, so dropping the old one breaks
 * no foreign key.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const columns = "outcome_id, run_id, token_id, outcome, is_terminal, sink_name, batch_id, fork_group_id, " +
    "join_group_id, expand_group_id, error_hash, context_json, recorded_at"
  const statements = [
    `CREATE TABLE token_outcomes_0004 (
      outcome_id TEXT PRIMARY KEY,
      run_id TEXT NOT NULL REFERENCES runs (run_id),
      token_id TEXT NOT NULL REFERENCES tokens (token_id),
      outcome TEXT NOT NULL CHECK (outcome IN ('COMPLETED', 'ROUTED', 'FORKED', 'FAILED', 'QUARANTINED',
        'CONSUMED_IN_BATCH', 'COALESCED', 'EXPANDED', 'BUFFERED', 'DIVERTED')),
      is_terminal INTEGER NOT NULL CHECK (is_terminal = (outcome <> 'BUFFERED')),
      sink_name TEXT,
      batch_id TEXT REFERENCES batches (batch_id),
      fork_group_id TEXT,
      join_group_id TEXT,
      expand_group_id TEXT,
      error_hash TEXT,
      context_json TEXT,
      recorded_at TEXT NOT NULL
    )`,
    `INSERT INTO token_outcomes_0004 (${columns}) SELECT ${columns} FROM token_outcomes ORDER BY rowid`,
    `DROP TABLE token_outcomes`,
    `ALTER TABLE token_outcomes_0004 RENAME TO token_outcomes`,
    `CREATE UNIQUE INDEX token_outcomes_one_terminal ON token_outcomes (token_id) WHERE is_terminal = 1`,
    `CREATE INDEX token_outcomes_run ON token_outcomes (run_id, outcome)`,
    `CREATE INDEX token_outcomes_token ON token_outcomes (token_id)`
  ]
  for (const statement of statements) yield* sql.unsafe(statement)
})
