/**
 * The compact per-row tables (schema v2, migration 0010) and the public tables they
 * show as. `ls_rows`, `ls_tokens`, `ls_node_states`, `ls_routing_events` and
 * `ls_token_outcomes` refer to runs, nodes, edges, rows, tokens and states by integer
 * keys; the views `rows`, `tokens`, `node_states`, `routing_events` and
 * `token_outcomes` show them with the text ids, column for column as before.
 *
 * What else needs to know the mapping (the change journal, which writes each change
 * as the public record) reads it here.
 */

/** A column of a public table: a column of the compact table, or an id found through one of its keys. */
export interface PublicColumn {
  readonly name: string
  /** SQL for the value, given the alias of the compact table's row (NEW, OLD, …). */
  readonly sql: (row: string) => string
}

const own = (name: string): PublicColumn => ({ name, sql: (row) => `${row}.${name}` })
const via = (name: string, key: string, table: string, tableKey = key, id = name): PublicColumn => ({
  name,
  sql: (row) => `(SELECT ${id} FROM ${table} WHERE ${tableKey} = ${row}.${key})`
})

export interface CompactTable {
  readonly base: string
  readonly view: string
  readonly columns: ReadonlyArray<PublicColumn>
}

export const COMPACT_TABLES: ReadonlyArray<CompactTable> = [
  {
    base: "ls_rows",
    view: "rows",
    columns: [
      own("row_id"),
      via("run_id", "run_key", "runs"),
      via("source_node_id", "source_node_key", "nodes", "node_key", "node_id"),
      own("row_index"),
      own("source_data_hash"),
      own("source_data_json"),
      own("created_at")
    ]
  },
  {
    base: "ls_tokens",
    view: "tokens",
    columns: [
      own("token_id"),
      via("run_id", "run_key", "runs"),
      via("row_id", "row_key", "ls_rows"),
      own("fork_group_id"),
      own("join_group_id"),
      own("expand_group_id"),
      own("branch_name"),
      own("created_at")
    ]
  },
  {
    base: "ls_node_states",
    view: "node_states",
    columns: [
      own("state_id"),
      via("token_id", "token_key", "ls_tokens"),
      via("run_id", "run_key", "runs"),
      via("node_id", "node_key", "nodes"),
      own("step_index"),
      own("attempt"),
      own("status"),
      own("input_hash"),
      own("output_hash"),
      own("duration_ms"),
      own("error_json"),
      own("started_at"),
      own("completed_at")
    ]
  },
  {
    base: "ls_routing_events",
    view: "routing_events",
    columns: [
      own("event_id"),
      via("state_id", "state_key", "ls_node_states"),
      via("edge_id", "edge_key", "edges"),
      own("routing_group_id"),
      own("ordinal"),
      own("mode"),
      own("reason_json"),
      own("created_at")
    ]
  },
  {
    base: "ls_token_outcomes",
    view: "token_outcomes",
    columns: [
      own("outcome_id"),
      via("run_id", "run_key", "runs"),
      via("token_id", "token_key", "ls_tokens"),
      own("outcome"),
      own("is_terminal"),
      own("sink_name"),
      own("batch_id"),
      own("fork_group_id"),
      own("join_group_id"),
      own("expand_group_id"),
      own("error_hash"),
      own("context_json"),
      own("recorded_at")
    ]
  }
]

export const compactTableOf = (base: string): CompactTable | undefined => COMPACT_TABLES.find((t) => t.base === base)

/** The integer keys given to runs, nodes and edges: internal, never part of a public record. */
export const INTERNAL_KEY_COLUMNS: ReadonlyMap<string, string> = new Map([
  ["runs", "run_key"],
  ["nodes", "node_key"],
  ["edges", "edge_key"]
])
