/**
 * Lineage: the question `explain` answers (a row or token of a run) and the shape of
 * its answer, with the ways the question can have no single answer.
 */
import { Data } from "effect"
import type { EdgeMode, NodeType, Outcome, RunStatus, StateStatus } from "../services/records.js"

// ---------------------------------------------------------------------------
// The query and its answer

export interface LineageQuery {
  /** A run id, or `latest` for the most recently started run. */
  readonly runId: string
  /** A row id, or the 0-based index of the row in the source (`rows.row_index`). */
  readonly row?: string
  /** A token id; picks that token (and its row). */
  readonly token?: string
  /** With `row`: the token of the row that reached this sink. */
  readonly sink?: string
  /** Where the run's call payloads are; default the run's `payload_store.base_path`. */
  readonly payloadDir?: string
}

export interface LineageNode {
  readonly node_id: string
  readonly name: string
  readonly node_type: NodeType
  readonly plugin: string
}

export interface LineageRun {
  readonly run_id: string
  readonly status: RunStatus
  readonly started_at: string
  readonly completed_at: string | null
}

export interface LineageRow {
  readonly row_id: string
  readonly row_index: number
  readonly source: LineageNode
  /** The row as the source read it (parsed from `source_data_json`). */
  readonly data: unknown
  /** `source_data_hash`: canonical JSON → SHA-256. */
  readonly hash: string
  readonly created_at: string
}

export interface LineageOutcome {
  readonly outcome: Outcome
  readonly is_terminal: boolean
  readonly sink_name: string | null
  readonly batch_id: string | null
  readonly error_hash: string | null
  /** Why the engine chose this outcome (parsed `context_json`), when it said. */
  readonly context: unknown
  readonly recorded_at: string
}

/** A token of the row; `children` are the tokens it was expanded or forked into. */
export interface LineageToken {
  readonly token_id: string
  readonly parent_token_ids: ReadonlyArray<string>
  readonly fork_group_id: string | null
  readonly join_group_id: string | null
  readonly expand_group_id: string | null
  readonly branch_name: string | null
  readonly created_at: string
  /** The terminal outcome (or, while the run is going, the latest one). */
  readonly outcome: LineageOutcome | null
  readonly children: ReadonlyArray<LineageToken>
}

export interface LineageRouting {
  readonly event_id: string
  readonly edge_label: string
  /** Name of the node the edge leads to (a sink name for routes to sinks). */
  readonly destination: string
  readonly destination_type: NodeType
  readonly mode: EdgeMode
  readonly routing_group_id: string
  /**
   * Parsed `reason_json`: `{condition, result, destination}` for a gate,
   * `{on_error, error}` for a diverted error.
   */
  readonly reason: unknown
}

export interface LineageStep {
  readonly state_id: string
  readonly token_id: string
  readonly node: LineageNode
  readonly step_index: number
  readonly attempt: number
  readonly status: StateStatus
  readonly input_hash: string
  readonly output_hash: string | null
  readonly duration_ms: number | null
  readonly error: unknown
  readonly started_at: string
  readonly completed_at: string | null
  readonly routing: ReadonlyArray<LineageRouting>
}

export interface LineageTransformError {
  readonly error_id: string
  readonly token_id: string
  readonly state_id: string | null
  readonly node: string
  readonly details: unknown
  readonly destination: string
  readonly row_hash: string
  readonly created_at: string
}

export interface LineageValidationError {
  readonly error_id: string
  readonly node: string
  readonly error: string
  readonly schema_mode: string
  readonly destination: string
  readonly row_hash: string
  readonly created_at: string
}

export interface LineageArtifact {
  readonly path_or_uri: string
  readonly content_hash: string
  readonly size_bytes: number
}

export interface LineageSink {
  readonly name: string
  readonly node_id: string | null
  readonly plugin: string | null
  /** What the sink wrote in this run (one per file or table). */
  readonly artifacts: ReadonlyArray<LineageArtifact>
}

/** One body of a call as explain shows it. */
export interface LineagePayload {
  readonly hash: string
  /** `stored` (value present), `purged` (the store no longer has it), `unavailable` (no store, or it failed its hash check). */
  readonly status: "stored" | "purged" | "unavailable"
  /** The body (parsed JSON, or its text) when stored. */
  readonly value?: unknown
  readonly note?: string
}

export interface LineageCall {
  readonly call_id: string
  readonly state_id: string
  readonly node: string | null
  readonly call_type: string
  readonly provider: string | null
  readonly model: string | null
  readonly response_model: string | null
  readonly attempt: number | null
  readonly status: string
  readonly http_status: number | null
  readonly error_class: string | null
  readonly error: unknown
  readonly latency_ms: number | null
  readonly usage: unknown
  readonly verify: unknown
  readonly created_at: string
  readonly request: LineagePayload | null
  readonly response: LineagePayload | null
}

export interface Lineage {
  readonly run: LineageRun
  readonly row: LineageRow
  /** The row's tokens as a tree: root tokens, each with its children. */
  readonly tokens: ReadonlyArray<LineageToken>
  readonly token_id: string
  /** The selected token and its ancestors, from the root token down to it. */
  readonly path: ReadonlyArray<string>
  /** Every node state of the tokens on the path, in processing order. */
  readonly steps: ReadonlyArray<LineageStep>
  readonly transform_errors: ReadonlyArray<LineageTransformError>
  readonly validation_errors: ReadonlyArray<LineageValidationError>
  readonly outcome: LineageOutcome | null
  readonly sink: LineageSink | null
  /** External calls (`llm`, `http`) of the steps, every attempt, with their bodies from the payload store. */
  readonly calls: ReadonlyArray<LineageCall>
}

// ---------------------------------------------------------------------------
// Errors

export class LineageRunNotFound extends Data.TaggedError("LineageRunNotFound")<{
  readonly runId: string
  readonly message: string
}> {}

export class LineageRowNotFound extends Data.TaggedError("LineageRowNotFound")<{
  readonly runId: string
  readonly row: string
  /** How many rows the run recorded (the message names the range of their indexes). */
  readonly rowCount: number
  readonly message: string
}> {}

export class LineageTokenNotFound extends Data.TaggedError("LineageTokenNotFound")<{
  readonly runId: string
  readonly token: string | null
  readonly sink: string | null
  readonly message: string
}> {}

export interface LineageCandidate {
  readonly token_id: string
  readonly outcome: Outcome | null
  readonly sink_name: string | null
  readonly branch_name: string | null
  readonly expand_group_id: string | null
}

/** A row whose tokens reached several outcomes: pick one with `sink` or `token`. */
export class AmbiguousLineage extends Data.TaggedError("AmbiguousLineage")<{
  readonly runId: string
  readonly rowId: string
  readonly rowIndex: number
  readonly sink: string | null
  readonly candidates: ReadonlyArray<LineageCandidate>
  readonly message: string
}> {}

export class InvalidLineageQuery extends Data.TaggedError("InvalidLineageQuery")<{
  readonly message: string
}> {}

export type LineageError =
  | LineageRunNotFound
  | LineageRowNotFound
  | LineageTokenNotFound
  | AmbiguousLineage
  | InvalidLineageQuery
