import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"

/**
 * Compact keys for the per-row tables (schema v2). A row's trail used to repeat
 * 36-character text ids in every record and every index (its run, its node, its
 * token, its state); now
 *
 * - runs, nodes and edges carry an integer key (`run_key`, `node_key`, `edge_key`),
 *   given by a trigger to whatever is inserted without one;
 * - rows, tokens, node states, routing events and outcomes are stored in `ls_rows`,
 *   `ls_tokens`, `ls_node_states`, `ls_routing_events` and `ls_token_outcomes`, keyed
 *   by an integer, referring to each other by those integers; each public id (row_id,
 *   token_id, state_id, event_id, outcome_id) is stored once, in its own record;
 * - the tables auditors and tools query keep their names, columns and values as
 *   views (`rows`, `tokens`, `node_states`, `routing_events`, `token_outcomes`), which
 *   also take INSERTs (a trigger resolves the ids) so that older tools keep writing.
 *
 * The old tables are renamed first, which points the foreign keys of the tables that
 * refer to them (token_parents, batch_members, batch_outputs, calls, transform_errors,
 * validation_errors) at the new names; then the data are copied, every id resolved
 * through a LEFT JOIN, so that a record whose parent is missing fails the migration
 * (NOT NULL) instead of being dropped. Runs with foreign keys off (the opener turns
 * them off around migrations, and checks them after).
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const outcomes = `'COMPLETED', 'ROUTED', 'FORKED', 'FAILED', 'QUARANTINED', 'CONSUMED_IN_BATCH', 'COALESCED', 'EXPANDED', 'BUFFERED', 'DIVERTED'`
  const raise = (what: string, value: string) => `SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: no ${what}') WHERE (${value}) IS NULL;`
  const runKey = (id: string) => `(SELECT run_key FROM runs WHERE run_id = ${id})`
  const nodeKey = (run: string, node: string) => `(SELECT node_key FROM nodes WHERE run_id = ${run} AND node_id = ${node})`
  const statements = [
    // Integer keys of the parents, and a trigger that gives one to a row inserted without.
    ...[["runs", "run_key"], ["nodes", "node_key"], ["edges", "edge_key"]].flatMap(([table, key]) => [
      `ALTER TABLE ${table} ADD COLUMN ${key} INTEGER`,
      `UPDATE ${table} SET ${key} = rowid`,
      `CREATE UNIQUE INDEX ${table}_key ON ${table} (${key})`,
      `CREATE TRIGGER ${table}_key_given AFTER INSERT ON ${table} WHEN NEW.${key} IS NULL BEGIN
         UPDATE ${table} SET ${key} = (SELECT COALESCE(MAX(${key}), 0) + 1 FROM ${table}) WHERE rowid = NEW.rowid;
       END`
    ]),

    // The old tables step aside under the new names, which points the foreign keys of
    // the tables that refer to them at those names; each is then replaced by its compact
    // form (built as ls_*_new, copied, renamed).
    `ALTER TABLE rows RENAME TO ls_rows`,
    `ALTER TABLE tokens RENAME TO ls_tokens`,
    `ALTER TABLE node_states RENAME TO ls_node_states`,
    `ALTER TABLE routing_events RENAME TO ls_routing_events`,
    `ALTER TABLE token_outcomes RENAME TO ls_token_outcomes`,

    `CREATE TABLE ls_rows_new (
      row_key INTEGER PRIMARY KEY,
      row_id TEXT NOT NULL UNIQUE,
      run_key INTEGER NOT NULL REFERENCES runs (run_key),
      source_node_key INTEGER NOT NULL REFERENCES nodes (node_key),
      row_index INTEGER NOT NULL,
      source_data_hash TEXT NOT NULL,
      source_data_json TEXT NOT NULL,
      created_at TEXT NOT NULL,
      UNIQUE (run_key, row_index)
    )`,
    `INSERT INTO ls_rows_new (row_key, row_id, run_key, source_node_key, row_index, source_data_hash, source_data_json, created_at)
     SELECT o.rowid, o.row_id, u.run_key, n.node_key, o.row_index, o.source_data_hash, o.source_data_json, o.created_at
     FROM ls_rows o LEFT JOIN runs u ON u.run_id = o.run_id
       LEFT JOIN nodes n ON n.run_id = o.run_id AND n.node_id = o.source_node_id
     ORDER BY o.rowid`,

    `CREATE TABLE ls_tokens_new (
      token_key INTEGER PRIMARY KEY,
      token_id TEXT NOT NULL UNIQUE,
      run_key INTEGER NOT NULL REFERENCES runs (run_key),
      row_key INTEGER NOT NULL REFERENCES ls_rows (row_key),
      fork_group_id TEXT,
      join_group_id TEXT,
      expand_group_id TEXT,
      branch_name TEXT,
      created_at TEXT NOT NULL
    )`,
    `INSERT INTO ls_tokens_new (token_key, token_id, run_key, row_key, fork_group_id, join_group_id, expand_group_id, branch_name, created_at)
     SELECT o.rowid, o.token_id, u.run_key, r.row_key, o.fork_group_id, o.join_group_id, o.expand_group_id, o.branch_name, o.created_at
     FROM ls_tokens o LEFT JOIN runs u ON u.run_id = o.run_id LEFT JOIN ls_rows_new r ON r.row_id = o.row_id
     ORDER BY o.rowid`,

    `CREATE TABLE ls_node_states_new (
      state_key INTEGER PRIMARY KEY,
      state_id TEXT NOT NULL UNIQUE,
      token_key INTEGER NOT NULL REFERENCES ls_tokens (token_key),
      run_key INTEGER NOT NULL REFERENCES runs (run_key),
      node_key INTEGER NOT NULL REFERENCES nodes (node_key),
      step_index INTEGER NOT NULL,
      attempt INTEGER NOT NULL DEFAULT 1,
      status TEXT NOT NULL CHECK (status IN ('open', 'completed', 'failed')),
      input_hash TEXT NOT NULL,
      output_hash TEXT,
      duration_ms REAL,
      error_json TEXT,
      started_at TEXT NOT NULL,
      completed_at TEXT,
      CHECK ((status = 'open') = (completed_at IS NULL))
    )`,
    `INSERT INTO ls_node_states_new (state_key, state_id, token_key, run_key, node_key, step_index, attempt, status, input_hash,
       output_hash, duration_ms, error_json, started_at, completed_at)
     SELECT o.rowid, o.state_id, t.token_key, u.run_key, n.node_key, o.step_index, o.attempt, o.status, o.input_hash,
       o.output_hash, o.duration_ms, o.error_json, o.started_at, o.completed_at
     FROM ls_node_states o LEFT JOIN ls_tokens_new t ON t.token_id = o.token_id LEFT JOIN runs u ON u.run_id = o.run_id
       LEFT JOIN nodes n ON n.run_id = o.run_id AND n.node_id = o.node_id
     ORDER BY o.rowid`,

    `CREATE TABLE ls_routing_events_new (
      event_key INTEGER PRIMARY KEY,
      event_id TEXT NOT NULL,
      state_key INTEGER NOT NULL REFERENCES ls_node_states (state_key),
      edge_key INTEGER NOT NULL REFERENCES edges (edge_key),
      routing_group_id TEXT NOT NULL,
      ordinal INTEGER NOT NULL DEFAULT 0,
      mode TEXT NOT NULL CHECK (mode IN ('move', 'copy', 'divert')),
      reason_json TEXT,
      created_at TEXT NOT NULL
    )`,
    `INSERT INTO ls_routing_events_new (event_key, event_id, state_key, edge_key, routing_group_id, ordinal, mode, reason_json, created_at)
     SELECT o.rowid, o.event_id, s.state_key, g.edge_key, o.routing_group_id, o.ordinal, o.mode, o.reason_json, o.created_at
     FROM ls_routing_events o LEFT JOIN ls_node_states_new s ON s.state_id = o.state_id LEFT JOIN edges g ON g.edge_id = o.edge_id
     ORDER BY o.rowid`,

    `CREATE TABLE ls_token_outcomes_new (
      outcome_key INTEGER PRIMARY KEY,
      outcome_id TEXT NOT NULL,
      run_key INTEGER NOT NULL REFERENCES runs (run_key),
      token_key INTEGER NOT NULL REFERENCES ls_tokens (token_key),
      outcome TEXT NOT NULL CHECK (outcome IN (${outcomes})),
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
    `INSERT INTO ls_token_outcomes_new (outcome_key, outcome_id, run_key, token_key, outcome, is_terminal, sink_name, batch_id,
       fork_group_id, join_group_id, expand_group_id, error_hash, context_json, recorded_at)
     SELECT o.rowid, o.outcome_id, u.run_key, t.token_key, o.outcome, o.is_terminal, o.sink_name, o.batch_id,
       o.fork_group_id, o.join_group_id, o.expand_group_id, o.error_hash, o.context_json, o.recorded_at
     FROM ls_token_outcomes o LEFT JOIN runs u ON u.run_id = o.run_id LEFT JOIN ls_tokens_new t ON t.token_id = o.token_id
     ORDER BY o.rowid`,

    // The tables that referred to the old ones name ls_*, which is now the compact
    // table; their foreign keys reach a public id stored once (UNIQUE).
    `DROP TABLE ls_routing_events`,
    `DROP TABLE ls_token_outcomes`,
    `DROP TABLE ls_node_states`,
    `DROP TABLE ls_tokens`,
    `DROP TABLE ls_rows`,
    `ALTER TABLE ls_rows_new RENAME TO ls_rows`,
    `ALTER TABLE ls_tokens_new RENAME TO ls_tokens`,
    `ALTER TABLE ls_node_states_new RENAME TO ls_node_states`,
    `ALTER TABLE ls_routing_events_new RENAME TO ls_routing_events`,
    `ALTER TABLE ls_token_outcomes_new RENAME TO ls_token_outcomes`,
    `CREATE INDEX ls_tokens_row ON ls_tokens (row_key)`,
    `CREATE INDEX ls_tokens_run ON ls_tokens (run_key)`,
    `CREATE INDEX ls_node_states_token ON ls_node_states (token_key, step_index, attempt)`,
    `CREATE INDEX ls_node_states_open ON ls_node_states (run_key) WHERE status = 'open'`,
    `CREATE INDEX ls_routing_events_state ON ls_routing_events (state_key)`,
    `CREATE INDEX ls_token_outcomes_run ON ls_token_outcomes (run_key, outcome)`,
    // One index serves a token's outcomes and forbids a second terminal one: a BUFFERED
    // outcome indexes NULL in the second column, and NULLs never collide.
    `CREATE UNIQUE INDEX ls_token_outcomes_token ON ls_token_outcomes (token_key, (CASE WHEN is_terminal = 1 THEN 1 END))`,

    // The public tables, as they were.
    `CREATE VIEW rows AS
     SELECT r.row_id, u.run_id, n.node_id AS source_node_id, r.row_index, r.source_data_hash, r.source_data_json, r.created_at
     FROM ls_rows r JOIN runs u ON u.run_key = r.run_key JOIN nodes n ON n.node_key = r.source_node_key`,
    `CREATE VIEW tokens AS
     SELECT t.token_id, u.run_id, r.row_id, t.fork_group_id, t.join_group_id, t.expand_group_id, t.branch_name, t.created_at
     FROM ls_tokens t JOIN ls_rows r ON r.row_key = t.row_key JOIN runs u ON u.run_key = t.run_key`,
    `CREATE VIEW node_states AS
     SELECT s.state_id, t.token_id, u.run_id, n.node_id, s.step_index, s.attempt, s.status, s.input_hash, s.output_hash,
       s.duration_ms, s.error_json, s.started_at, s.completed_at
     FROM ls_node_states s JOIN ls_tokens t ON t.token_key = s.token_key JOIN runs u ON u.run_key = s.run_key
       JOIN nodes n ON n.node_key = s.node_key`,
    `CREATE VIEW routing_events AS
     SELECT e.event_id, s.state_id, g.edge_id, e.routing_group_id, e.ordinal, e.mode, e.reason_json, e.created_at
     FROM ls_routing_events e JOIN ls_node_states s ON s.state_key = e.state_key JOIN edges g ON g.edge_key = e.edge_key`,
    `CREATE VIEW token_outcomes AS
     SELECT o.outcome_id, u.run_id, t.token_id, o.outcome, o.is_terminal, o.sink_name, o.batch_id, o.fork_group_id,
       o.join_group_id, o.expand_group_id, o.error_hash, o.context_json, o.recorded_at
     FROM ls_token_outcomes o JOIN ls_tokens t ON t.token_key = o.token_key JOIN runs u ON u.run_key = o.run_key`,

    // INSERTs through the public names resolve the ids to keys; an id that names
    // nothing fails as a foreign key would.
    `CREATE TRIGGER rows_insert INSTEAD OF INSERT ON rows BEGIN
       ${raise("run", runKey("NEW.run_id"))}
       ${raise("source node", nodeKey("NEW.run_id", "NEW.source_node_id"))}
       INSERT INTO ls_rows (row_id, run_key, source_node_key, row_index, source_data_hash, source_data_json, created_at)
       VALUES (NEW.row_id, ${runKey("NEW.run_id")}, ${nodeKey("NEW.run_id", "NEW.source_node_id")}, NEW.row_index,
         NEW.source_data_hash, NEW.source_data_json, NEW.created_at);
     END`,
    `CREATE TRIGGER tokens_insert INSTEAD OF INSERT ON tokens BEGIN
       ${raise("run", runKey("NEW.run_id"))}
       ${raise("row", "SELECT row_key FROM ls_rows WHERE row_id = NEW.row_id")}
       INSERT INTO ls_tokens (token_id, run_key, row_key, fork_group_id, join_group_id, expand_group_id, branch_name, created_at)
       VALUES (NEW.token_id, ${runKey("NEW.run_id")}, (SELECT row_key FROM ls_rows WHERE row_id = NEW.row_id), NEW.fork_group_id,
         NEW.join_group_id, NEW.expand_group_id, NEW.branch_name, NEW.created_at);
     END`,
    `CREATE TRIGGER node_states_insert INSTEAD OF INSERT ON node_states BEGIN
       ${raise("token", "SELECT token_key FROM ls_tokens WHERE token_id = NEW.token_id")}
       ${raise("run", runKey("NEW.run_id"))}
       ${raise("node", nodeKey("NEW.run_id", "NEW.node_id"))}
       INSERT INTO ls_node_states (state_id, token_key, run_key, node_key, step_index, attempt, status, input_hash, output_hash,
         duration_ms, error_json, started_at, completed_at)
       VALUES (NEW.state_id, (SELECT token_key FROM ls_tokens WHERE token_id = NEW.token_id), ${runKey("NEW.run_id")},
         ${nodeKey("NEW.run_id", "NEW.node_id")}, NEW.step_index, COALESCE(NEW.attempt, 1), NEW.status, NEW.input_hash,
         NEW.output_hash, NEW.duration_ms, NEW.error_json, NEW.started_at, NEW.completed_at);
     END`,
    `CREATE TRIGGER routing_events_insert INSTEAD OF INSERT ON routing_events BEGIN
       ${raise("node state", "SELECT state_key FROM ls_node_states WHERE state_id = NEW.state_id")}
       ${raise("edge", "SELECT edge_key FROM edges WHERE edge_id = NEW.edge_id")}
       INSERT INTO ls_routing_events (event_id, state_key, edge_key, routing_group_id, ordinal, mode, reason_json, created_at)
       VALUES (NEW.event_id, (SELECT state_key FROM ls_node_states WHERE state_id = NEW.state_id),
         (SELECT edge_key FROM edges WHERE edge_id = NEW.edge_id), NEW.routing_group_id, COALESCE(NEW.ordinal, 0), NEW.mode,
         NEW.reason_json, NEW.created_at);
     END`,
    `CREATE TRIGGER token_outcomes_insert INSTEAD OF INSERT ON token_outcomes BEGIN
       ${raise("run", runKey("NEW.run_id"))}
       ${raise("token", "SELECT token_key FROM ls_tokens WHERE token_id = NEW.token_id")}
       INSERT INTO ls_token_outcomes (outcome_id, run_key, token_key, outcome, is_terminal, sink_name, batch_id, fork_group_id,
         join_group_id, expand_group_id, error_hash, context_json, recorded_at)
       VALUES (NEW.outcome_id, ${runKey("NEW.run_id")}, (SELECT token_key FROM ls_tokens WHERE token_id = NEW.token_id),
         NEW.outcome, NEW.is_terminal, NEW.sink_name, NEW.batch_id, NEW.fork_group_id, NEW.join_group_id, NEW.expand_group_id,
         NEW.error_hash, NEW.context_json, NEW.recorded_at);
     END`
  ]
  for (const statement of statements) yield* sql.unsafe(statement)
})
