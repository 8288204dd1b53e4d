/**
 * The audit records the engine appends to the Landscape, one variant per table (plus
 * the two updates: a node state or a batch that changes status). They are plain
 * objects so that the hot path can build a row's records synchronously and append
 * them in one call.
 */
export type Outcome =
  | "COMPLETED"
  | "ROUTED"
  | "FORKED"
  | "FAILED"
  | "QUARANTINED"
  | "DIVERTED"
  | "CONSUMED_IN_BATCH"
  | "COALESCED"
  | "EXPANDED"
  | "BUFFERED"

export const OUTCOMES: ReadonlyArray<Outcome> = [
  "COMPLETED",
  "ROUTED",
  "FORKED",
  "FAILED",
  "QUARANTINED",
  "DIVERTED",
  "CONSUMED_IN_BATCH",
  "COALESCED",
  "EXPANDED",
  "BUFFERED"
]

/** BUFFERED is the only outcome that is not terminal. */
export const isTerminalOutcome = (outcome: Outcome): boolean => outcome !== "BUFFERED"

export type RunStatus = "running" | "completed" | "failed" | "interrupted"
export type NodeType = "source" | "transform" | "aggregation" | "gate" | "coalesce" | "sink"
export type EdgeMode = "move" | "copy" | "divert"
export type StateStatus = "open" | "completed" | "failed"
export type BatchStatus = "draft" | "executing" | "completed" | "failed"
export type TriggerType = "count" | "timeout" | "condition" | "end_of_source"

export interface NodeRecord {
  readonly _tag: "Node"
  readonly run_id: string
  readonly node_id: string
  readonly plugin_name: string
  readonly node_type: NodeType
  readonly name: string
  readonly config_hash: string
  readonly config_json: string
  readonly sequence: number
}

export interface EdgeRecord {
  readonly _tag: "Edge"
  readonly edge_id: string
  readonly run_id: string
  readonly from_node_id: string
  readonly to_node_id: string
  readonly label: string
  readonly mode: EdgeMode
}

export interface RowRecord {
  readonly _tag: "Row"
  readonly row_id: string
  readonly run_id: string
  readonly source_node_id: string
  readonly row_index: number
  readonly source_data_hash: string
  readonly source_data_json: string
  readonly created_at: string
}

export interface TokenRecord {
  readonly _tag: "Token"
  readonly token_id: string
  readonly run_id: string
  readonly row_id: string
  readonly fork_group_id: string | null
  readonly join_group_id: string | null
  readonly expand_group_id: string | null
  readonly branch_name: string | null
  readonly created_at: string
}

export interface TokenParentRecord {
  readonly _tag: "TokenParent"
  readonly token_id: string
  readonly parent_token_id: string
  readonly ordinal: number
}

export interface NodeStateRecord {
  readonly _tag: "NodeState"
  readonly state_id: string
  readonly token_id: string
  readonly run_id: string
  readonly node_id: string
  readonly step_index: number
  readonly attempt: number
  status: StateStatus
  readonly input_hash: string
  output_hash: string | null
  duration_ms: number | null
  error_json: string | null
  readonly started_at: string
  completed_at: string | null
}

export interface NodeStateCompletion {
  readonly _tag: "NodeStateCompletion"
  readonly state_id: string
  readonly status: "completed" | "failed"
  readonly output_hash: string | null
  readonly duration_ms: number
  readonly error_json: string | null
  readonly completed_at: string
}

export interface RoutingEventRecord {
  readonly _tag: "RoutingEvent"
  readonly event_id: string
  readonly state_id: string
  readonly edge_id: string
  readonly routing_group_id: string
  readonly ordinal: number
  readonly mode: EdgeMode
  readonly reason_json: string | null
  readonly created_at: string
}

export interface OutcomeRecord {
  readonly _tag: "Outcome"
  readonly outcome_id: string
  readonly run_id: string
  readonly token_id: string
  readonly outcome: Outcome
  readonly is_terminal: 0 | 1
  readonly sink_name: string | null
  readonly batch_id: string | null
  readonly fork_group_id: string | null
  readonly join_group_id: string | null
  readonly expand_group_id: string | null
  readonly error_hash: string | null
  readonly context_json: string | null
  readonly recorded_at: string
}

export interface BatchRecord {
  readonly _tag: "Batch"
  readonly batch_id: string
  readonly run_id: string
  readonly aggregation_node_id: string
  trigger_type: TriggerType | null
  trigger_reason: string | null
  status: BatchStatus
  readonly attempt: number
  error_json: string | null
  readonly created_at: string
  completed_at: string | null
}

export interface BatchUpdate {
  readonly _tag: "BatchUpdate"
  readonly batch_id: string
  readonly status: BatchStatus
  readonly trigger_type: TriggerType | null
  readonly trigger_reason: string | null
  readonly error_json: string | null
  readonly completed_at: string | null
}

export interface BatchMemberRecord {
  readonly _tag: "BatchMember"
  readonly batch_id: string
  readonly token_id: string
  readonly ordinal: number
}

export interface BatchOutputRecord {
  readonly _tag: "BatchOutput"
  readonly batch_id: string
  readonly token_id: string
  readonly ordinal: number
}

export interface ArtifactRecord {
  readonly _tag: "Artifact"
  readonly artifact_id: string
  readonly run_id: string
  readonly sink_node_id: string
  readonly sink_name: string
  readonly artifact_type: string
  readonly path_or_uri: string
  readonly content_hash: string
  readonly size_bytes: number
  readonly created_at: string
}

export interface ValidationErrorRecord {
  readonly _tag: "ValidationError"
  readonly error_id: string
  readonly run_id: string
  readonly node_id: string
  readonly row_id: string | null
  readonly row_hash: string
  readonly row_json: string
  readonly error: string
  readonly schema_mode: string
  readonly destination: string
  readonly created_at: string
}

export interface TransformErrorRecord {
  readonly _tag: "TransformError"
  readonly error_id: string
  readonly run_id: string
  readonly token_id: string
  readonly node_id: string
  readonly state_id: string | null
  readonly row_hash: string
  readonly row_json: string
  readonly error_details_json: string
  readonly destination: string
  readonly created_at: string
}

export interface CheckpointRecord {
  readonly _tag: "Checkpoint"
  readonly checkpoint_id: string
  readonly run_id: string
  readonly token_id: string | null
  readonly node_id: string | null
  readonly sequence_number: number
  readonly aggregation_state_json: string | null
  readonly sink_state_json: string | null
  readonly topology_hash: string
  readonly created_at: string
  /** The engine's whole state at the checkpoint, for resume (typed state JSON). */
  readonly state_json: string | null
  /** The attempt of the run that wrote it. */
  readonly attempt: number | null
}

export interface OperationRecord {
  readonly _tag: "Operation"
  readonly operation_id: string
  readonly run_id: string
  readonly node_id: string
  readonly operation_type: string
  readonly status: StateStatus
  readonly started_at: string
  readonly completed_at: string | null
  readonly duration_ms: number | null
  readonly error_message: string | null
}

export interface CallRecord {
  readonly _tag: "Call"
  readonly call_id: string
  readonly state_id: string | null
  readonly operation_id: string | null
  readonly call_index: number
  readonly call_type: string
  readonly status: string
  readonly request_hash: string | null
  readonly response_hash: string | null
  readonly error_json: string | null
  readonly latency_ms: number | null
  readonly created_at: string
  /** The run and node that made the call (external calls; migration 0009). */
  readonly run_id: string | null
  readonly node_id: string | null
  /** `openai`, `openrouter`, `azure`, `http`. */
  readonly provider: string | null
  /** The model asked for, and the one the reply says answered. */
  readonly model: string | null
  readonly response_model: string | null
  readonly http_status: number | null
  /** 1-based attempt of the logical call (retries are further attempts). */
  readonly attempt: number | null
  /** Null on success; `timeout`, `rate_limited`, `server_error`, `interrupted`, … */
  readonly error_class: string | null
  /** Token usage the reply reported, canonical JSON. */
  readonly usage_json: string | null
  /** `run_mode: verify`: how the reply and the decision compare with the recorded ones. */
  readonly verify_json: string | null
}

export type AuditRecord =
  | NodeRecord
  | EdgeRecord
  | RowRecord
  | TokenRecord
  | TokenParentRecord
  | NodeStateRecord
  | NodeStateCompletion
  | RoutingEventRecord
  | OutcomeRecord
  | BatchRecord
  | BatchUpdate
  | BatchMemberRecord
  | BatchOutputRecord
  | ArtifactRecord
  | ValidationErrorRecord
  | TransformErrorRecord
  | CheckpointRecord
  | OperationRecord
  | CallRecord

export type InsertTag = Exclude<AuditRecord["_tag"], "NodeStateCompletion" | "BatchUpdate">
