import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"

/**
 * The pipeline tables of the Landscape. Key column names are a contract: auditors
 * and tools query them directly.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const statements = [
    `CREATE TABLE landscape_meta (
      key TEXT PRIMARY KEY,
      value TEXT NOT NULL
    )`,
    `INSERT INTO landscape_meta (key, value) VALUES ('format', 'runledger-landscape')`,
    `CREATE TABLE runs (
      run_id TEXT PRIMARY KEY,
      status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'interrupted')),
      started_at TEXT NOT NULL,
      completed_at TEXT,
      config_hash TEXT NOT NULL,
      settings_json TEXT NOT NULL,
      canonical_version TEXT NOT NULL,
      source_schema_json TEXT,
      error_message TEXT,
      result_json TEXT,
      owner_pid INTEGER,
      owner_host TEXT,
      export_status TEXT CHECK (export_status IS NULL OR export_status IN ('pending', 'completed', 'failed')),
      export_error TEXT,
      export_format TEXT,
      export_sink TEXT,
      exported_at TEXT
    )`,
    `CREATE INDEX runs_started ON runs (started_at)`,
    `CREATE TABLE nodes (
      run_id TEXT NOT NULL REFERENCES runs (run_id),
      node_id TEXT NOT NULL,
      plugin_name TEXT NOT NULL,
      node_type TEXT NOT NULL CHECK (node_type IN ('source', 'transform', 'aggregation', 'gate', 'coalesce', 'sink')),
      name TEXT NOT NULL,
      config_hash TEXT NOT NULL,
      config_json TEXT NOT NULL,
      sequence INTEGER NOT NULL,
      PRIMARY KEY (run_id, node_id)
    )`,
    `CREATE TABLE edges (
      edge_id TEXT PRIMARY KEY,
      run_id TEXT NOT NULL REFERENCES runs (run_id),
      from_node_id TEXT NOT NULL,
      to_node_id TEXT NOT NULL,
      label TEXT NOT NULL,
      mode TEXT NOT NULL CHECK (mode IN ('move', 'copy', 'divert')),
      FOREIGN KEY (run_id, from_node_id) REFERENCES nodes (run_id, node_id),
      FOREIGN KEY (run_id, to_node_id) REFERENCES nodes (run_id, node_id),
      UNIQUE (run_id, from_node_id, label)
    )`,
    `CREATE TABLE rows (
      row_id TEXT PRIMARY KEY,
      run_id TEXT NOT NULL REFERENCES runs (run_id),
      source_node_id TEXT NOT NULL,
      row_index INTEGER NOT NULL,
      source_data_hash TEXT NOT NULL,
      source_data_json TEXT NOT NULL,
      created_at TEXT NOT NULL,
      FOREIGN KEY (run_id, source_node_id) REFERENCES nodes (run_id, node_id),
      UNIQUE (run_id, row_index)
    )`,
    `CREATE TABLE tokens (
      token_id TEXT PRIMARY KEY,
      run_id TEXT NOT NULL REFERENCES runs (run_id),
      row_id TEXT NOT NULL REFERENCES rows (row_id),
      fork_group_id TEXT,
      join_group_id TEXT,
      expand_group_id TEXT,
      branch_name TEXT,
      created_at TEXT NOT NULL
    )`,
    `CREATE INDEX tokens_row ON tokens (row_id)`,
    `CREATE INDEX tokens_run ON tokens (run_id, token_id)`,
    `CREATE TABLE token_parents (
      token_id TEXT NOT NULL REFERENCES tokens (token_id),
      parent_token_id TEXT NOT NULL REFERENCES tokens (token_id),
      ordinal INTEGER NOT NULL,
      PRIMARY KEY (token_id, parent_token_id)
    )`,
    `CREATE INDEX token_parents_parent ON token_parents (parent_token_id)`,
    `CREATE TABLE node_states (
      state_id TEXT PRIMARY KEY,
      token_id TEXT NOT NULL REFERENCES tokens (token_id),
      run_id TEXT NOT NULL REFERENCES runs (run_id),
      node_id TEXT NOT NULL,
      step_index INTEGER NOT NULL,
      attempt INTEGER NOT NULL DEFAULT 1,
      status TEXT NOT NULL CHECK (status IN ('open', 'completed', 'failed')),
      input_hash TEXT NOT NULL,
      output_hash TEXT,
      duration_ms REAL,
      error_json TEXT,
      started_at TEXT NOT NULL,
      completed_at TEXT,
      FOREIGN KEY (run_id, node_id) REFERENCES nodes (run_id, node_id),
      CHECK ((status = 'open') = (completed_at IS NULL))
    )`,
    `CREATE INDEX node_states_token ON node_states (token_id, step_index, attempt)`,
    // Only open states are looked up by run (to close them when a run ends): a partial
    // index costs nothing for the completed states the hot path inserts.
    `CREATE INDEX node_states_open ON node_states (run_id) WHERE status = 'open'`,
    `CREATE TABLE routing_events (
      event_id TEXT PRIMARY KEY,
      state_id TEXT NOT NULL REFERENCES node_states (state_id),
      edge_id TEXT NOT NULL REFERENCES edges (edge_id),
      routing_group_id TEXT NOT NULL,
      ordinal INTEGER NOT NULL DEFAULT 0,
      mode TEXT NOT NULL CHECK (mode IN ('move', 'copy', 'divert')),
      reason_json TEXT,
      created_at TEXT NOT NULL
    )`,
    `CREATE INDEX routing_events_state ON routing_events (state_id)`,
    `CREATE TABLE batches (
      batch_id TEXT PRIMARY KEY,
      run_id TEXT NOT NULL REFERENCES runs (run_id),
      aggregation_node_id TEXT NOT NULL,
      trigger_type TEXT CHECK (trigger_type IS NULL OR trigger_type IN ('count', 'timeout', 'condition', 'end_of_source')),
      trigger_reason TEXT,
      status TEXT NOT NULL CHECK (status IN ('draft', 'executing', 'completed', 'failed')),
      attempt INTEGER NOT NULL DEFAULT 1,
      error_json TEXT,
      created_at TEXT NOT NULL,
      completed_at TEXT,
      FOREIGN KEY (run_id, aggregation_node_id) REFERENCES nodes (run_id, node_id)
    )`,
    `CREATE INDEX batches_run ON batches (run_id, created_at)`,
    `CREATE TABLE batch_members (
      batch_id TEXT NOT NULL REFERENCES batches (batch_id),
      token_id TEXT NOT NULL REFERENCES tokens (token_id),
      ordinal INTEGER NOT NULL,
      PRIMARY KEY (batch_id, token_id)
    )`,
    `CREATE INDEX batch_members_token ON batch_members (token_id)`,
    `CREATE TABLE batch_outputs (
      batch_id TEXT NOT NULL REFERENCES batches (batch_id),
      token_id TEXT NOT NULL REFERENCES tokens (token_id),
      ordinal INTEGER NOT NULL,
      PRIMARY KEY (batch_id, token_id)
    )`,
    `CREATE TABLE token_outcomes (
      outcome_id TEXT PRIMARY KEY,
      run_id TEXT NOT NULL REFERENCES runs (run_id),
      token_id TEXT NOT NULL REFERENCES tokens (token_id),
      outcome TEXT NOT NULL CHECK (outcome IN ('COMPLETED', 'ROUTED', 'FORKED', 'FAILED', 'QUARANTINED',
        'CONSUMED_IN_BATCH', 'COALESCED', 'EXPANDED', 'BUFFERED')),
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
    // The schema itself forbids a second terminal outcome for a token.
    `CREATE UNIQUE INDEX token_outcomes_one_terminal ON token_outcomes (token_id) WHERE is_terminal = 1`,
    `CREATE INDEX token_outcomes_run ON token_outcomes (run_id, outcome)`,
    `CREATE INDEX token_outcomes_token ON token_outcomes (token_id)`,
    `CREATE TABLE artifacts (
      artifact_id TEXT PRIMARY KEY,
      run_id TEXT NOT NULL REFERENCES runs (run_id),
      sink_node_id TEXT NOT NULL,
      sink_name TEXT NOT NULL,
      artifact_type TEXT NOT NULL,
      path_or_uri TEXT NOT NULL,
      content_hash TEXT NOT NULL,
      size_bytes INTEGER NOT NULL,
      created_at TEXT NOT NULL,
      FOREIGN KEY (run_id, sink_node_id) REFERENCES nodes (run_id, node_id)
    )`,
    `CREATE INDEX artifacts_run ON artifacts (run_id)`,
    `CREATE TABLE validation_errors (
      error_id TEXT PRIMARY KEY,
      run_id TEXT NOT NULL REFERENCES runs (run_id),
      node_id TEXT NOT NULL,
      row_id TEXT REFERENCES rows (row_id),
      row_hash TEXT NOT NULL,
      row_json TEXT NOT NULL,
      error TEXT NOT NULL,
      schema_mode TEXT NOT NULL,
      destination TEXT NOT NULL,
      created_at TEXT NOT NULL
    )`,
    `CREATE INDEX validation_errors_run ON validation_errors (run_id)`,
    `CREATE TABLE transform_errors (
      error_id TEXT PRIMARY KEY,
      run_id TEXT NOT NULL REFERENCES runs (run_id),
      token_id TEXT NOT NULL REFERENCES tokens (token_id),
      node_id TEXT NOT NULL,
      state_id TEXT REFERENCES node_states (state_id),
      row_hash TEXT NOT NULL,
      row_json TEXT NOT NULL,
      error_details_json TEXT NOT NULL,
      destination TEXT NOT NULL,
      created_at TEXT NOT NULL
    )`,
    `CREATE INDEX transform_errors_run ON transform_errors (run_id)`,
    `CREATE TABLE checkpoints (
      checkpoint_id TEXT PRIMARY KEY,
      run_id TEXT NOT NULL REFERENCES runs (run_id),
      token_id TEXT,
      node_id TEXT,
      sequence_number INTEGER NOT NULL,
      aggregation_state_json TEXT,
      sink_state_json TEXT,
      topology_hash TEXT NOT NULL,
      created_at TEXT NOT NULL
    )`,
    `CREATE INDEX checkpoints_run ON checkpoints (run_id, sequence_number)`,
    `CREATE TABLE operations (
      operation_id TEXT PRIMARY KEY,
      run_id TEXT NOT NULL REFERENCES runs (run_id),
      node_id TEXT NOT NULL,
      operation_type TEXT NOT NULL,
      status TEXT NOT NULL CHECK (status IN ('open', 'completed', 'failed')),
      started_at TEXT NOT NULL,
      completed_at TEXT,
      duration_ms REAL,
      error_message TEXT
    )`,
    `CREATE INDEX operations_run ON operations (run_id)`,
    `CREATE TABLE calls (
      call_id TEXT PRIMARY KEY,
      state_id TEXT REFERENCES node_states (state_id),
      operation_id TEXT REFERENCES operations (operation_id),
      call_index INTEGER NOT NULL,
      call_type TEXT NOT NULL,
      status TEXT NOT NULL,
      request_hash TEXT,
      response_hash TEXT,
      error_json TEXT,
      latency_ms REAL,
      created_at TEXT NOT NULL,
      CHECK ((state_id IS NULL) <> (operation_id IS NULL))
    )`
  ]
  for (const statement of statements) yield* sql.unsafe(statement)
})
