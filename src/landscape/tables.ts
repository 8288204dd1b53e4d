/**
 * Where each audit record is stored: its table and the columns of that table it fills,
 * in foreign-key order (parents before children).
 *
 * The column lists are fixed here rather than read off the records, so that a record
 * built without one of its nullable fields is stored with that column NULL instead of
 * changing the statement that every later record of the table goes through.
 */
import type { AuditRecord, InsertTag } from "../services/records.js"

/** The fields of the record with tag `T`, which are the columns of its table. */
export type ColumnOf<T extends InsertTag> = Exclude<keyof Extract<AuditRecord, { readonly _tag: T }>, "_tag"> & string

export interface TableSpec<T extends InsertTag = InsertTag> {
  readonly tag: T
  readonly table: string
  readonly columns: ReadonlyArray<string>
}

const spec = <T extends InsertTag, const C extends ReadonlyArray<ColumnOf<T>>>(
  tag: T,
  table: string,
  // A column of the record left out of the list is a compile error naming it.
  columns: C & ([Exclude<ColumnOf<T>, C[number]>] extends [never] ? unknown : { readonly missing: Exclude<ColumnOf<T>, C[number]> })
): TableSpec<T> => ({ tag, table, columns })

export const NODES = spec("Node", "nodes", [
  "run_id", "node_id", "plugin_name", "node_type", "name", "config_hash", "config_json", "sequence"
])
export const EDGES = spec("Edge", "edges", ["edge_id", "run_id", "from_node_id", "to_node_id", "label", "mode"])
export const ROWS = spec("Row", "rows", [
  "row_id", "run_id", "source_node_id", "row_index", "source_data_hash", "source_data_json", "created_at"
])
export const TOKENS = spec("Token", "tokens", [
  "token_id", "run_id", "row_id", "fork_group_id", "join_group_id", "expand_group_id", "branch_name", "created_at"
])
export const TOKEN_PARENTS = spec("TokenParent", "token_parents", ["token_id", "parent_token_id", "ordinal"])
export const OPERATIONS = spec("Operation", "operations", [
  "operation_id", "run_id", "node_id", "operation_type", "status", "started_at", "completed_at", "duration_ms", "error_message"
])
export const NODE_STATES = spec("NodeState", "node_states", [
  "state_id", "token_id", "run_id", "node_id", "step_index", "attempt", "status", "input_hash", "output_hash",
  "duration_ms", "error_json", "started_at", "completed_at"
])
export const ROUTING_EVENTS = spec("RoutingEvent", "routing_events", [
  "event_id", "state_id", "edge_id", "routing_group_id", "ordinal", "mode", "reason_json", "created_at"
])
export const CALLS = spec("Call", "calls", [
  "call_id", "state_id", "operation_id", "call_index", "call_type", "status", "request_hash", "response_hash",
  "error_json", "latency_ms", "created_at", "run_id", "node_id", "provider", "model", "response_model", "http_status",
  "attempt", "error_class", "usage_json", "verify_json"
])
export const BATCHES = spec("Batch", "batches", [
  "batch_id", "run_id", "aggregation_node_id", "trigger_type", "trigger_reason", "status", "attempt", "error_json",
  "created_at", "completed_at"
])
export const BATCH_MEMBERS = spec("BatchMember", "batch_members", ["batch_id", "token_id", "ordinal"])
export const BATCH_OUTPUTS = spec("BatchOutput", "batch_outputs", ["batch_id", "token_id", "ordinal"])
export const TOKEN_OUTCOMES = spec("Outcome", "token_outcomes", [
  "outcome_id", "run_id", "token_id", "outcome", "is_terminal", "sink_name", "batch_id", "fork_group_id",
  "join_group_id", "expand_group_id", "error_hash", "context_json", "recorded_at"
])
export const ARTIFACTS = spec("Artifact", "artifacts", [
  "artifact_id", "run_id", "sink_node_id", "sink_name", "artifact_type", "path_or_uri", "content_hash", "size_bytes",
  "created_at"
])
export const VALIDATION_ERRORS = spec("ValidationError", "validation_errors", [
  "error_id", "run_id", "node_id", "row_id", "row_hash", "row_json", "error", "schema_mode", "destination", "created_at"
])
export const TRANSFORM_ERRORS = spec("TransformError", "transform_errors", [
  "error_id", "run_id", "token_id", "node_id", "state_id", "row_hash", "row_json", "error_details_json", "destination",
  "created_at"
])
export const CHECKPOINTS = spec("Checkpoint", "checkpoints", [
  "checkpoint_id", "run_id", "token_id", "node_id", "sequence_number", "aggregation_state_json", "sink_state_json",
  "topology_hash", "created_at", "state_json", "attempt"
])

/** Every insertable record's table, in foreign-key order (parents before children). */
export const TABLES = [
  NODES,
  EDGES,
  ROWS,
  TOKENS,
  TOKEN_PARENTS,
  OPERATIONS,
  NODE_STATES,
  ROUTING_EVENTS,
  CALLS,
  BATCHES,
  BATCH_MEMBERS,
  BATCH_OUTPUTS,
  TOKEN_OUTCOMES,
  ARTIFACTS,
  VALIDATION_ERRORS,
  TRANSFORM_ERRORS,
  CHECKPOINTS
] as const satisfies ReadonlyArray<TableSpec>

// A record type without a table is a compile error naming it.
type Unlisted = Exclude<InsertTag, (typeof TABLES)[number]["tag"]>
const everyRecordHasATable: [Unlisted] extends [never] ? true : { readonly unlisted: Unlisted } = true
void everyRecordHasATable

/** Table of each insertable record, in foreign-key order (parents before children). */
export const TABLE_ORDER: ReadonlyArray<readonly [InsertTag, string]> = TABLES.map((t) => [t.tag, t.table] as const)

const byTag = new Map<string, TableSpec>(TABLES.map((t) => [t.tag, t]))

/** The table of an insertable record's tag; undefined for anything else. */
export const tableOf = (tag: string): TableSpec | undefined => byTag.get(tag)
