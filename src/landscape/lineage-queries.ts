/**
 * The reads behind `explain`: a fixed number of queries per explanation (never one per
 * node state), each returning the rows as stored. Turning them into a `Lineage` is
 * `lineage-assembly.ts`.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import { RecorderError } from "../services/recorder.js"
import type { EdgeMode, NodeType, Outcome, StateStatus } from "../services/records.js"
import type { LineageArtifact, LineageRun, LineageTransformError, LineageValidationError } from "./lineage-types.js"

type Sql = SqlClient.SqlClient

export interface RowRow {
  readonly row_id: string
  readonly row_index: number
  readonly source_data_hash: string
  readonly source_data_json: string
  readonly created_at: string
  readonly node_id: string
  readonly name: string
  readonly node_type: NodeType
  readonly plugin_name: string
}

export interface TokenRow {
  readonly token_id: string
  readonly fork_group_id: string | null
  readonly join_group_id: string | null
  readonly expand_group_id: string | null
  readonly branch_name: string | null
  readonly created_at: string
}

export interface TokenLinkRow {
  readonly token_id: string
  readonly parent_token_id: string
}

export interface OutcomeRow {
  readonly token_id: string
  readonly outcome: Outcome
  readonly is_terminal: number
  readonly sink_name: string | null
  readonly batch_id: string | null
  readonly error_hash: string | null
  readonly context_json: string | null
  readonly recorded_at: string
}

export interface StateRow {
  readonly state_id: string
  readonly token_id: string
  readonly node_id: string
  readonly step_index: number
  readonly attempt: number
  readonly status: StateStatus
  readonly input_hash: string
  readonly output_hash: string | null
  readonly duration_ms: number | null
  readonly error_json: string | null
  readonly started_at: string
  readonly completed_at: string | null
  readonly name: string
  readonly node_type: NodeType
  readonly plugin_name: string
}

export interface RoutingRow {
  readonly event_id: string
  readonly state_id: string
  readonly routing_group_id: string
  readonly mode: EdgeMode
  readonly reason_json: string | null
  readonly label: string
  readonly name: string
  readonly node_type: NodeType
}

export type TransformErrorRow = Omit<LineageTransformError, "details"> & { readonly error_details_json: string }

export interface SinkNodeRow {
  readonly node_id: string
  readonly plugin_name: string
}

export const dbError = (what: string) => (e: SqlError) =>
  new RecorderError({ reason: "Database", message: `${what}: ${e.message}`, cause: e })

export const readRun = (sql: Sql, runId: string) =>
  sql<LineageRun>`
    SELECT run_id, status, started_at, completed_at FROM runs WHERE run_id = ${runId}`.pipe(
    Effect.map((rows) => rows[0]),
    Effect.mapError(dbError(`reading run ${runId}`))
  )

/** The row id of a token of the run; undefined when the run has no such token. */
export const rowOfToken = (sql: Sql, runId: string, tokenId: string) =>
  sql<{ row_id: string }>`
    SELECT row_id FROM tokens WHERE token_id = ${tokenId} AND run_id = ${runId}`.pipe(
    Effect.map((rows) => rows[0]?.row_id),
    Effect.mapError(dbError(`reading token ${tokenId}`))
  )

/** A row of the run with its source node, by row id or by `row_index`. */
export const readRow = (sql: Sql, runId: string, row: { readonly index: number } | { readonly id: string }) => {
  const where = "index" in row ? sql`r.row_index = ${row.index}` : sql`r.row_id = ${row.id}`
  return sql<RowRow>`
    SELECT r.row_id, r.row_index, r.source_data_hash, r.source_data_json, r.created_at,
           n.node_id, n.name, n.node_type, n.plugin_name
    FROM rows r JOIN nodes n ON n.run_id = r.run_id AND n.node_id = r.source_node_id
    WHERE r.run_id = ${runId} AND ${where}`.pipe(
    Effect.map((rows) => rows[0]),
    Effect.mapError(dbError(`reading the row of run ${runId}`))
  )
}

/** How many rows the run recorded, and the range of their indexes. */
export const rowIndexRange = (sql: Sql, runId: string) =>
  sql<{ n: number; first: number | null; last: number | null }>`
    SELECT COUNT(*) AS n, MIN(row_index) AS first, MAX(row_index) AS last FROM rows WHERE run_id = ${runId}`.pipe(
    Effect.map((rows) => rows[0] ?? { n: 0, first: null, last: null }),
    Effect.mapError(dbError(`counting the rows of run ${runId}`))
  )

/** Three queries for the whole token tree of a row: tokens, parent links, outcomes. */
export const readTokenRows = (sql: Sql, rowId: string) =>
  Effect.gen(function*() {
    const tokens = yield* sql<TokenRow>`
      SELECT token_id, fork_group_id, join_group_id, expand_group_id, branch_name, created_at
      FROM tokens WHERE row_id = ${rowId} ORDER BY created_at, token_id`
    const links = yield* sql<TokenLinkRow>`
      SELECT p.token_id, p.parent_token_id FROM token_parents p JOIN tokens t ON t.token_id = p.token_id
      WHERE t.row_id = ${rowId} ORDER BY p.token_id, p.ordinal`
    const outcomes = yield* sql<OutcomeRow>`
      SELECT o.token_id, o.outcome, o.is_terminal, o.sink_name, o.batch_id, o.error_hash, o.context_json, o.recorded_at
      FROM token_outcomes o JOIN tokens t ON t.token_id = o.token_id
      WHERE t.row_id = ${rowId} ORDER BY o.recorded_at, o.outcome_id`
    return { tokens, links, outcomes }
  }).pipe(Effect.mapError(dbError(`reading the tokens of row ${rowId}`)))

/** Node states (with their routing events) and transform errors of the tokens on `path` (to `tokenId`). */
export const readStepRows = (sql: Sql, tokenId: string, path: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const states = yield* sql<StateRow>`
      SELECT s.state_id, s.token_id, s.node_id, s.step_index, s.attempt, s.status, s.input_hash, s.output_hash,
             s.duration_ms, s.error_json, s.started_at, s.completed_at, n.name, n.node_type, n.plugin_name
      FROM node_states s JOIN nodes n ON n.run_id = s.run_id AND n.node_id = s.node_id
      WHERE s.token_id IN ${sql.in(path)}
      ORDER BY s.step_index, s.attempt, s.started_at, s.state_id`
    const routings = yield* sql<RoutingRow>`
      SELECT e.event_id, e.state_id, e.routing_group_id, e.mode, e.reason_json, ed.label, n.name, n.node_type
      FROM routing_events e
        JOIN node_states s ON s.state_id = e.state_id
        JOIN edges ed ON ed.edge_id = e.edge_id
        JOIN nodes n ON n.run_id = ed.run_id AND n.node_id = ed.to_node_id
      WHERE s.token_id IN ${sql.in(path)}
      ORDER BY e.routing_group_id, e.ordinal`
    const errors = yield* sql<TransformErrorRow>`
      SELECT te.error_id, te.token_id, te.state_id, n.name AS node, te.error_details_json, te.destination,
             te.row_hash, te.created_at
      FROM transform_errors te JOIN nodes n ON n.run_id = te.run_id AND n.node_id = te.node_id
      WHERE te.token_id IN ${sql.in(path)} ORDER BY te.created_at, te.error_id`
    return { states, routings, errors }
  }).pipe(Effect.mapError(dbError(`reading the steps of token ${tokenId}`)))

export const readValidationErrors = (sql: Sql, rowId: string) =>
  sql<LineageValidationError>`
    SELECT ve.error_id, n.name AS node, ve.error, ve.schema_mode, ve.destination, ve.row_hash, ve.created_at
    FROM validation_errors ve JOIN nodes n ON n.run_id = ve.run_id AND n.node_id = ve.node_id
    WHERE ve.row_id = ${rowId} ORDER BY ve.created_at, ve.error_id`.pipe(
    Effect.mapError(dbError(`reading the validation errors of row ${rowId}`))
  )

/** The sink node of that name in the run, and what it wrote. */
export const readSinkRows = (sql: Sql, runId: string, name: string) =>
  Effect.gen(function*() {
    const [node] = yield* sql<SinkNodeRow>`
      SELECT node_id, plugin_name FROM nodes WHERE run_id = ${runId} AND node_type = 'sink' AND name = ${name}`
    const artifacts = yield* sql<LineageArtifact>`
      SELECT path_or_uri, content_hash, size_bytes FROM artifacts
      WHERE run_id = ${runId} AND sink_name = ${name} ORDER BY created_at, artifact_id`
    return { node, artifacts }
  }).pipe(Effect.mapError(dbError(`reading sink ${name}`)))
