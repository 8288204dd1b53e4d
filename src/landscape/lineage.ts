/**
 * Lineage (`explain`): everything the Landscape recorded about one source row and one
 * of its tokens — the row as read, the tokens derived from it, every node state on the
 * path from the source to the token's outcome, the routing decisions with their
 * reasons, the errors, and the sink that received it.
 *
 * It reads with a fixed number of queries per explanation (never one per state), so
 * explaining a row costs the same whatever the size of the run.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Data, Effect } from "effect"
import { Recorder, RecorderError } from "../services/recorder.js"
import type { EdgeMode, NodeType, Outcome, RunStatus, StateStatus } from "./records.js"

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
  /** Rows the run recorded; valid indexes are 0 … rowCount - 1. */
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

// ---------------------------------------------------------------------------
// Reading

interface RowRow {
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

interface TokenRow {
  readonly token_id: string
  readonly fork_group_id: string | null
  readonly join_group_id: string | null
  readonly expand_group_id: string | null
  readonly branch_name: string | null
  readonly created_at: string
}

interface OutcomeRow {
  readonly token_id: string
  readonly outcome: Outcome
  readonly is_terminal: number
  readonly sink_name: string | null
  readonly batch_id: string | null
  readonly error_hash: string | null
  readonly context_json: string | null
  readonly recorded_at: string
}

interface StateRow {
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

interface RoutingRow {
  readonly event_id: string
  readonly state_id: string
  readonly routing_group_id: string
  readonly mode: EdgeMode
  readonly reason_json: string | null
  readonly label: string
  readonly name: string
  readonly node_type: NodeType
}

/** Stored JSON parsed; text that is not JSON (never written by the engine) is kept as text. */
const parseJson = (text: string | null): unknown => {
  if (text === null) return null
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

const dbError = (what: string) => (e: SqlError) =>
  new RecorderError({ reason: "Database", message: `${what}: ${e.message}`, cause: e })

const isIndex = (s: string) => /^\d+$/.test(s)

const describeRow = (row: string) => (isIndex(row) ? `row index ${row}` : `row ${row}`)

const toOutcome = (o: OutcomeRow): LineageOutcome => ({
  outcome: o.outcome,
  is_terminal: o.is_terminal === 1,
  sink_name: o.sink_name,
  batch_id: o.batch_id,
  error_hash: o.error_hash,
  context: parseJson(o.context_json),
  recorded_at: o.recorded_at
})

const candidateOf = (t: TokenRow, outcome: LineageOutcome | null): LineageCandidate => ({
  token_id: t.token_id,
  outcome: outcome?.outcome ?? null,
  sink_name: outcome?.sink_name ?? null,
  branch_name: t.branch_name,
  expand_group_id: t.expand_group_id
})

const listCandidates = (candidates: ReadonlyArray<LineageCandidate>): string =>
  candidates.map((c) => `  ${c.token_id}  ${c.outcome ?? "(no outcome yet)"}${c.sink_name === null ? "" : `  sink ${c.sink_name}`}`).join("\n")

/**
 * The lineage of one row or token of a run. With `row` alone, the row's token that
 * reached an outcome (a leaf of its token tree); when several did (explode or fork
 * children), `sink` picks the one that reached that sink, and otherwise the answer is
 * an AmbiguousLineage listing them.
 */
export const explain = Effect.fn("Lineage.explain")(function*(query: LineageQuery) {
  const sql = yield* SqlClient.SqlClient
  const recorder = yield* Recorder
  // Whatever this program recorded and still buffers belongs in the answer.
  yield* recorder.flush

  if (query.row === undefined && query.token === undefined) {
    return yield* new InvalidLineageQuery({ message: "give a row (row id or 0-based index) or a token id to explain" })
  }

  const runId: string = yield* recorder.resolveRunId(query.runId).pipe(
    Effect.catchIf(
      (e) => e.reason === "MissingRun",
      (e) => Effect.fail(new LineageRunNotFound({ runId: query.runId, message: e.message }))
    )
  )
  const [run] = yield* sql<LineageRun>`
    SELECT run_id, status, started_at, completed_at FROM runs WHERE run_id = ${runId}`.pipe(
    Effect.mapError(dbError(`reading run ${runId}`))
  )
  if (run === undefined) return yield* new LineageRunNotFound({ runId, message: `no run with id ${runId} in this Landscape` })

  // The token asked for, when one was.
  let tokenRowId: string | undefined
  if (query.token !== undefined) {
    const found = yield* sql<{ row_id: string }>`
      SELECT row_id FROM tokens WHERE token_id = ${query.token} AND run_id = ${runId}`.pipe(
      Effect.mapError(dbError(`reading token ${query.token}`))
    )
    if (found[0] === undefined) {
      return yield* new LineageTokenNotFound({
        runId,
        token: query.token,
        sink: query.sink ?? null,
        message: `no token ${query.token} in run ${runId}`
      })
    }
    tokenRowId = found[0].row_id
  }

  // The row.
  const rowSelect = sql`
    SELECT r.row_id, r.row_index, r.source_data_hash, r.source_data_json, r.created_at,
           n.node_id, n.name, n.node_type, n.plugin_name
    FROM rows r JOIN nodes n ON n.run_id = r.run_id AND n.node_id = r.source_node_id`
  const rowWhere = query.row === undefined
    ? sql`r.row_id = ${tokenRowId!}`
    : isIndex(query.row)
    ? sql`r.row_index = ${Number(query.row)}`
    : sql`r.row_id = ${query.row}`
  const rows = yield* sql<RowRow>`${rowSelect} WHERE r.run_id = ${runId} AND ${rowWhere}`.pipe(
    Effect.mapError(dbError(`reading the row of run ${runId}`))
  )
  const rowRow = rows[0]
  if (rowRow === undefined) {
    const requested = query.row ?? tokenRowId!
    const [count] = yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM rows WHERE run_id = ${runId}`.pipe(
      Effect.mapError(dbError(`counting the rows of run ${runId}`))
    )
    const n = count?.n ?? 0
    const range = n === 0 ? `run ${runId} recorded no rows` : `valid row indexes of run ${runId} are 0…${n - 1}`
    return yield* new LineageRowNotFound({
      runId,
      row: requested,
      rowCount: n,
      message: `no ${describeRow(requested)} in run ${runId}; ${range} (or give a row id)`
    })
  }
  if (tokenRowId !== undefined && rowRow.row_id !== tokenRowId) {
    return yield* new LineageTokenNotFound({
      runId,
      token: query.token!,
      sink: query.sink ?? null,
      message: `token ${query.token} belongs to row ${tokenRowId}, not to ${describeRow(query.row!)} (${rowRow.row_id})`
    })
  }
  const rowId = rowRow.row_id

  // Its tokens, their parents and outcomes: three queries for the whole tree.
  const tokens = yield* sql<TokenRow>`
    SELECT token_id, fork_group_id, join_group_id, expand_group_id, branch_name, created_at
    FROM tokens WHERE row_id = ${rowId} ORDER BY created_at, token_id`.pipe(
    Effect.mapError(dbError(`reading the tokens of row ${rowId}`))
  )
  const parentRows = yield* sql<{ token_id: string; parent_token_id: string }>`
    SELECT p.token_id, p.parent_token_id FROM token_parents p JOIN tokens t ON t.token_id = p.token_id
    WHERE t.row_id = ${rowId} ORDER BY p.token_id, p.ordinal`.pipe(
    Effect.mapError(dbError(`reading the token parents of row ${rowId}`))
  )
  const outcomeRows = yield* sql<OutcomeRow>`
    SELECT o.token_id, o.outcome, o.is_terminal, o.sink_name, o.batch_id, o.error_hash, o.context_json, o.recorded_at
    FROM token_outcomes o JOIN tokens t ON t.token_id = o.token_id
    WHERE t.row_id = ${rowId} ORDER BY o.recorded_at, o.outcome_id`.pipe(
    Effect.mapError(dbError(`reading the outcomes of row ${rowId}`))
  )

  const parents = new Map<string, Array<string>>()
  const children = new Map<string, Array<string>>()
  for (const p of parentRows) {
    const ps = parents.get(p.token_id) ?? []
    ps.push(p.parent_token_id)
    parents.set(p.token_id, ps)
    const cs = children.get(p.parent_token_id) ?? []
    cs.push(p.token_id)
    children.set(p.parent_token_id, cs)
  }
  const outcomes = new Map<string, LineageOutcome>()
  for (const o of outcomeRows) {
    // A terminal outcome wins over any non-terminal one; among equals, the latest.
    const known = outcomes.get(o.token_id)
    if (known === undefined || !known.is_terminal || o.is_terminal === 1) outcomes.set(o.token_id, toOutcome(o))
  }
  const byId = new Map(tokens.map((t) => [t.token_id, t]))

  // The selected token.
  let selected: string
  if (query.token !== undefined) {
    selected = query.token
    const reached = outcomes.get(selected)?.sink_name ?? null
    if (query.sink !== undefined && reached !== query.sink) {
      return yield* new LineageTokenNotFound({
        runId,
        token: selected,
        sink: query.sink,
        message: `token ${selected} did not reach sink '${query.sink}' (${reached === null ? "it reached no sink" : `it reached '${reached}'`})`
      })
    }
  } else {
    // The leaves of the tree: tokens nothing was derived from (within this row).
    const leaves = tokens.filter((t) => !children.get(t.token_id)?.some((c) => byId.has(c)))
    const all = leaves.map((t) => candidateOf(t, outcomes.get(t.token_id) ?? null))
    const candidates = query.sink === undefined ? all : all.filter((c) => c.sink_name === query.sink)
    const where = `row ${rowRow.row_index} (${rowId}) of run ${runId}`
    if (candidates.length === 0) {
      const sinks = Array.from(new Set(all.flatMap((c) => (c.sink_name === null ? [] : [c.sink_name])))).sort()
      return yield* new LineageTokenNotFound({
        runId,
        token: null,
        sink: query.sink ?? null,
        message: query.sink === undefined
          ? `${where} has no tokens`
          : `no token of ${where} reached sink '${query.sink}'; ${
            sinks.length === 0 ? "it reached no sink" : `sinks it reached: ${sinks.join(", ")}`
          }`
      })
    }
    if (candidates.length > 1) {
      // --sink only helps when the candidates ended in different sinks.
      const bySink = query.sink === undefined && new Set(candidates.map((c) => c.sink_name)).size > 1
      return yield* new AmbiguousLineage({
        runId,
        rowId,
        rowIndex: rowRow.row_index,
        sink: query.sink ?? null,
        candidates,
        message: `${candidates.length} tokens of ${where} reached an outcome${
          query.sink === undefined ? "" : ` in sink '${query.sink}'`
        }; pick one by ${bySink ? "sink (--sink NAME) or " : ""}token (--token ID):\n${listCandidates(candidates)}`
      })
    }
    selected = candidates[0]!.token_id
  }

  // The path: the selected token and every ancestor within the row, roots first.
  const onPath = new Set<string>()
  const visit = (id: string) => {
    if (onPath.has(id)) return
    onPath.add(id)
    for (const p of parents.get(id) ?? []) if (byId.has(p)) visit(p)
  }
  visit(selected)
  const path = tokens.map((t) => t.token_id).filter((id) => onPath.has(id))
  const order = new Map(path.map((id, i) => [id, i]))

  const states = yield* sql<StateRow>`
    SELECT s.state_id, s.token_id, s.node_id, s.step_index, s.attempt, s.status, s.input_hash, s.output_hash,
           s.duration_ms, s.error_json, s.started_at, s.completed_at, n.name, n.node_type, n.plugin_name
    FROM node_states s JOIN nodes n ON n.run_id = s.run_id AND n.node_id = s.node_id
    WHERE s.token_id IN ${sql.in(path)}
    ORDER BY s.step_index, s.attempt, s.started_at, s.state_id`.pipe(
    Effect.mapError(dbError(`reading the node states of row ${rowId}`))
  )
  const routings = yield* sql<RoutingRow>`
    SELECT e.event_id, e.state_id, e.routing_group_id, e.mode, e.reason_json, ed.label, n.name, n.node_type
    FROM routing_events e
      JOIN node_states s ON s.state_id = e.state_id
      JOIN edges ed ON ed.edge_id = e.edge_id
      JOIN nodes n ON n.run_id = ed.run_id AND n.node_id = ed.to_node_id
    WHERE s.token_id IN ${sql.in(path)}
    ORDER BY e.routing_group_id, e.ordinal`.pipe(
    Effect.mapError(dbError(`reading the routing events of row ${rowId}`))
  )
  const transformErrors = yield* sql<Omit<LineageTransformError, "details"> & { readonly error_details_json: string }>`
    SELECT te.error_id, te.token_id, te.state_id, n.name AS node, te.error_details_json, te.destination,
           te.row_hash, te.created_at
    FROM transform_errors te JOIN nodes n ON n.run_id = te.run_id AND n.node_id = te.node_id
    WHERE te.token_id IN ${sql.in(path)} ORDER BY te.created_at, te.error_id`.pipe(
    Effect.mapError(dbError(`reading the transform errors of row ${rowId}`))
  )
  const validationErrors = yield* sql<LineageValidationError>`
    SELECT ve.error_id, n.name AS node, ve.error, ve.schema_mode, ve.destination, ve.row_hash, ve.created_at
    FROM validation_errors ve JOIN nodes n ON n.run_id = ve.run_id AND n.node_id = ve.node_id
    WHERE ve.row_id = ${rowId} ORDER BY ve.created_at, ve.error_id`.pipe(
    Effect.mapError(dbError(`reading the validation errors of row ${rowId}`))
  )

  const routingByState = new Map<string, Array<LineageRouting>>()
  for (const r of routings) {
    const list = routingByState.get(r.state_id) ?? []
    list.push({
      event_id: r.event_id,
      edge_label: r.label,
      destination: r.name,
      destination_type: r.node_type,
      mode: r.mode,
      routing_group_id: r.routing_group_id,
      reason: parseJson(r.reason_json)
    })
    routingByState.set(r.state_id, list)
  }
  const steps: Array<LineageStep> = states
    .map((s) => ({
      state_id: s.state_id,
      token_id: s.token_id,
      node: { node_id: s.node_id, name: s.name, node_type: s.node_type, plugin: s.plugin_name },
      step_index: s.step_index,
      attempt: s.attempt,
      status: s.status,
      input_hash: s.input_hash,
      output_hash: s.output_hash,
      duration_ms: s.duration_ms,
      error: parseJson(s.error_json),
      started_at: s.started_at,
      completed_at: s.completed_at,
      routing: routingByState.get(s.state_id) ?? []
    }))
    // Stable sort: ancestors before descendants, each in step order.
    .sort((a, b) => order.get(a.token_id)! - order.get(b.token_id)!)

  // The sink that received the token, with what it wrote.
  const outcome = outcomes.get(selected) ?? null
  let sink: LineageSink | null = null
  if (outcome?.sink_name != null) {
    const sinkName = outcome.sink_name
    const nodes = yield* sql<{ node_id: string; plugin_name: string }>`
      SELECT node_id, plugin_name FROM nodes WHERE run_id = ${runId} AND node_type = 'sink' AND name = ${sinkName}`.pipe(
      Effect.mapError(dbError(`reading sink ${sinkName}`))
    )
    const artifacts = yield* sql<LineageArtifact>`
      SELECT path_or_uri, content_hash, size_bytes FROM artifacts
      WHERE run_id = ${runId} AND sink_name = ${sinkName} ORDER BY created_at, artifact_id`.pipe(
      Effect.mapError(dbError(`reading the artifacts of sink ${sinkName}`))
    )
    sink = { name: sinkName, node_id: nodes[0]?.node_id ?? null, plugin: nodes[0]?.plugin_name ?? null, artifacts }
  }

  // The tree, each token under its first parent of the row.
  const firstParent = (id: string): string | undefined => parents.get(id)?.find((p) => byId.has(p))
  const under = new Map<string | undefined, Array<TokenRow>>()
  for (const t of tokens) {
    const key = firstParent(t.token_id)
    const list = under.get(key) ?? []
    list.push(t)
    under.set(key, list)
  }
  const treeOf = (t: TokenRow): LineageToken => ({
    token_id: t.token_id,
    parent_token_ids: parents.get(t.token_id) ?? [],
    fork_group_id: t.fork_group_id,
    join_group_id: t.join_group_id,
    expand_group_id: t.expand_group_id,
    branch_name: t.branch_name,
    created_at: t.created_at,
    outcome: outcomes.get(t.token_id) ?? null,
    children: (under.get(t.token_id) ?? []).map(treeOf)
  })
  const roots = (under.get(undefined) ?? []).map(treeOf)

  const lineage: Lineage = {
    run,
    row: {
      row_id: rowId,
      row_index: rowRow.row_index,
      source: { node_id: rowRow.node_id, name: rowRow.name, node_type: rowRow.node_type, plugin: rowRow.plugin_name },
      data: parseJson(rowRow.source_data_json),
      hash: rowRow.source_data_hash,
      created_at: rowRow.created_at
    },
    tokens: roots,
    token_id: selected,
    path,
    steps,
    transform_errors: transformErrors.map(({ error_details_json, ...rest }) => ({ ...rest, details: parseJson(error_details_json) })),
    validation_errors: validationErrors,
    outcome,
    sink
  }
  return lineage
})
