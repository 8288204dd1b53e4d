/**
 * Lineage (`explain`): everything the Landscape recorded about one source row and one
 * of its tokens — the row as read, the tokens derived from it, every node state on the
 * path from the source to the token's outcome, the routing decisions with their
 * reasons, the errors, and the sink that received it.
 *
 * It reads with a fixed number of queries per explanation (never one per state), so
 * explaining a row costs the same whatever the size of the run.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Data, Effect } from "effect"
import { Recorder, RecorderError } from "../services/recorder.js"
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

const append = <K, V>(map: Map<K, Array<V>>, key: K, value: V): void => {
  const list = map.get(key)
  if (list === undefined) map.set(key, [value])
  else list.push(value)
}

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

type Sql = SqlClient.SqlClient

/** The row asked for, directly or through one of its tokens. */
const findRow = (sql: Sql, runId: string, query: LineageQuery) =>
  Effect.gen(function*() {
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
    const requested = query.row ?? tokenRowId!
    const where = query.row !== undefined && isIndex(query.row)
      ? sql`r.row_index = ${Number(query.row)}`
      : sql`r.row_id = ${requested}`
    const [row] = yield* sql<RowRow>`
      SELECT r.row_id, r.row_index, r.source_data_hash, r.source_data_json, r.created_at,
             n.node_id, n.name, n.node_type, n.plugin_name
      FROM rows r JOIN nodes n ON n.run_id = r.run_id AND n.node_id = r.source_node_id
      WHERE r.run_id = ${runId} AND ${where}`.pipe(Effect.mapError(dbError(`reading the row of run ${runId}`)))
    if (row === undefined) {
      const [count] = yield* sql<{ n: number; first: number | null; last: number | null }>`
        SELECT COUNT(*) AS n, MIN(row_index) AS first, MAX(row_index) AS last FROM rows WHERE run_id = ${runId}`.pipe(
        Effect.mapError(dbError(`counting the rows of run ${runId}`))
      )
      const n = count?.n ?? 0
      const range = n === 0
        ? `run ${runId} recorded no rows`
        : `valid row indexes of run ${runId} are ${count!.first}…${count!.last}`
      return yield* new LineageRowNotFound({
        runId,
        row: requested,
        rowCount: n,
        message: `no ${describeRow(requested)} in run ${runId}; ${range} (or give a row id)`
      })
    }
    if (tokenRowId !== undefined && row.row_id !== tokenRowId) {
      return yield* new LineageTokenNotFound({
        runId,
        token: query.token!,
        sink: query.sink ?? null,
        message: `token ${query.token} belongs to row ${tokenRowId}, not to ${describeRow(query.row!)} (${row.row_id})`
      })
    }
    return row
  })

/** The tokens of a row with their parents and outcomes. */
interface TokenGraph {
  /** In creation order. */
  readonly tokens: ReadonlyArray<TokenRow>
  readonly byId: ReadonlyMap<string, TokenRow>
  readonly parents: ReadonlyMap<string, ReadonlyArray<string>>
  readonly children: ReadonlyMap<string, ReadonlyArray<string>>
  readonly outcomes: ReadonlyMap<string, LineageOutcome>
}

/** Three queries for the whole tree of the row. */
const readTokenGraph = (sql: Sql, rowId: string) =>
  Effect.gen(function*() {
    const tokens = yield* sql<TokenRow>`
      SELECT token_id, fork_group_id, join_group_id, expand_group_id, branch_name, created_at
      FROM tokens WHERE row_id = ${rowId} ORDER BY created_at, token_id`
    const links = yield* sql<{ token_id: string; parent_token_id: string }>`
      SELECT p.token_id, p.parent_token_id FROM token_parents p JOIN tokens t ON t.token_id = p.token_id
      WHERE t.row_id = ${rowId} ORDER BY p.token_id, p.ordinal`
    const outcomeRows = yield* sql<OutcomeRow>`
      SELECT o.token_id, o.outcome, o.is_terminal, o.sink_name, o.batch_id, o.error_hash, o.context_json, o.recorded_at
      FROM token_outcomes o JOIN tokens t ON t.token_id = o.token_id
      WHERE t.row_id = ${rowId} ORDER BY o.recorded_at, o.outcome_id`
    const parents = new Map<string, Array<string>>()
    const children = new Map<string, Array<string>>()
    for (const l of links) {
      append(parents, l.token_id, l.parent_token_id)
      append(children, l.parent_token_id, l.token_id)
    }
    const outcomes = new Map<string, LineageOutcome>()
    for (const o of outcomeRows) {
      // A terminal outcome wins over a non-terminal one; among equals, the latest.
      const known = outcomes.get(o.token_id)
      if (known === undefined || !known.is_terminal || o.is_terminal === 1) outcomes.set(o.token_id, toOutcome(o))
    }
    const graph: TokenGraph = { tokens, byId: new Map(tokens.map((t) => [t.token_id, t])), parents, children, outcomes }
    return graph
  }).pipe(Effect.mapError(dbError(`reading the tokens of row ${rowId}`)))

/** The token to explain: the one asked for, or the row's only leaf (in `sink`, when given). */
const selectToken = (
  graph: TokenGraph,
  runId: string,
  row: RowRow,
  query: LineageQuery
): Effect.Effect<string, LineageTokenNotFound | AmbiguousLineage> => {
  const sink = query.sink ?? null
  if (query.token !== undefined) {
    const reached = graph.outcomes.get(query.token)?.sink_name ?? null
    if (sink === null || reached === sink) return Effect.succeed(query.token)
    return Effect.fail(
      new LineageTokenNotFound({
        runId,
        token: query.token,
        sink,
        message: `token ${query.token} did not reach sink '${sink}' (${reached === null ? "it reached no sink" : `it reached '${reached}'`})`
      })
    )
  }
  // The leaves: tokens nothing was derived from within this row.
  const all = graph.tokens
    .filter((t) => !(graph.children.get(t.token_id) ?? []).some((c) => graph.byId.has(c)))
    .map((t) => candidateOf(t, graph.outcomes.get(t.token_id) ?? null))
  const candidates = sink === null ? all : all.filter((c) => c.sink_name === sink)
  const where = `row ${row.row_index} (${row.row_id}) of run ${runId}`
  if (candidates.length === 1) return Effect.succeed(candidates[0]!.token_id)
  if (candidates.length === 0) {
    const reached = Array.from(new Set(all.flatMap((c) => (c.sink_name === null ? [] : [c.sink_name])))).sort()
    return Effect.fail(
      new LineageTokenNotFound({
        runId,
        token: null,
        sink,
        message: sink === null
          ? `${where} has no tokens`
          : `no token of ${where} reached sink '${sink}'; ${reached.length === 0 ? "it reached no sink" : `sinks it reached: ${reached.join(", ")}`}`
      })
    )
  }
  // Naming a sink only helps when the candidates ended in different sinks.
  const bySink = sink === null && new Set(candidates.map((c) => c.sink_name)).size > 1
  return Effect.fail(
    new AmbiguousLineage({
      runId,
      rowId: row.row_id,
      rowIndex: row.row_index,
      sink,
      candidates,
      message: `${candidates.length} tokens of ${where} reached an outcome${sink === null ? "" : ` in sink '${sink}'`}; ` +
        `pick one by ${bySink ? "sink (--sink NAME) or " : ""}token (--token ID):\n${listCandidates(candidates)}`
    })
  )
}

/** The selected token and every ancestor of it within the row, in creation order (roots first). */
const pathTo = (graph: TokenGraph, selected: string): ReadonlyArray<string> => {
  const onPath = new Set<string>()
  const visit = (id: string) => {
    if (onPath.has(id)) return
    onPath.add(id)
    for (const p of graph.parents.get(id) ?? []) if (graph.byId.has(p)) visit(p)
  }
  visit(selected)
  return graph.tokens.map((t) => t.token_id).filter((id) => onPath.has(id))
}

/** Node states (with their routing events) and transform errors of the tokens on the path. */
const readSteps = (sql: Sql, path: ReadonlyArray<string>) =>
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
    const errors = yield* sql<Omit<LineageTransformError, "details"> & { readonly error_details_json: string }>`
      SELECT te.error_id, te.token_id, te.state_id, n.name AS node, te.error_details_json, te.destination,
             te.row_hash, te.created_at
      FROM transform_errors te JOIN nodes n ON n.run_id = te.run_id AND n.node_id = te.node_id
      WHERE te.token_id IN ${sql.in(path)} ORDER BY te.created_at, te.error_id`

    const routingByState = new Map<string, Array<LineageRouting>>()
    for (const r of routings) {
      append(routingByState, r.state_id, {
        event_id: r.event_id,
        edge_label: r.label,
        destination: r.name,
        destination_type: r.node_type,
        mode: r.mode,
        routing_group_id: r.routing_group_id,
        reason: parseJson(r.reason_json)
      })
    }
    const order = new Map(path.map((id, i) => [id, i]))
    const steps: ReadonlyArray<LineageStep> = states
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
      // Stable: ancestors before descendants, each in step order.
      .sort((a, b) => order.get(a.token_id)! - order.get(b.token_id)!)
    const transformErrors: ReadonlyArray<LineageTransformError> = errors.map(({ error_details_json, ...rest }) => ({
      ...rest,
      details: parseJson(error_details_json)
    }))
    return { steps, transformErrors }
  })

/** The sink that received a token, with what it wrote in the run. */
const readSink = (sql: Sql, runId: string, name: string) =>
  Effect.gen(function*() {
    const [node] = yield* sql<{ node_id: string; plugin_name: string }>`
      SELECT node_id, plugin_name FROM nodes WHERE run_id = ${runId} AND node_type = 'sink' AND name = ${name}`
    const artifacts = yield* sql<LineageArtifact>`
      SELECT path_or_uri, content_hash, size_bytes FROM artifacts
      WHERE run_id = ${runId} AND sink_name = ${name} ORDER BY created_at, artifact_id`
    const sink: LineageSink = { name, node_id: node?.node_id ?? null, plugin: node?.plugin_name ?? null, artifacts }
    return sink
  }).pipe(Effect.mapError(dbError(`reading sink ${name}`)))

/** The row's tokens as a tree, each under its first parent within the row. */
const tokenTree = (graph: TokenGraph): ReadonlyArray<LineageToken> => {
  const under = new Map<string | undefined, Array<TokenRow>>()
  for (const t of graph.tokens) {
    const parent = graph.parents.get(t.token_id)?.find((p) => graph.byId.has(p))
    append(under, parent, t)
  }
  const node = (t: TokenRow): LineageToken => ({
    token_id: t.token_id,
    parent_token_ids: graph.parents.get(t.token_id) ?? [],
    fork_group_id: t.fork_group_id,
    join_group_id: t.join_group_id,
    expand_group_id: t.expand_group_id,
    branch_name: t.branch_name,
    created_at: t.created_at,
    outcome: graph.outcomes.get(t.token_id) ?? null,
    children: (under.get(t.token_id) ?? []).map(node)
  })
  return (under.get(undefined) ?? []).map(node)
}

/**
 * The lineage of one row or token of a run. With `row` alone, the row's token that
 * reached an outcome (a leaf of its token tree); when several did (explode or fork
 * children), `sink` picks the one that reached that sink, and otherwise the answer is
 * an AmbiguousLineage listing them.
 */
export const explain = Effect.fn("Lineage.explain")(function*(query: LineageQuery) {
  const sql = yield* SqlClient.SqlClient
  const recorder = yield* Recorder
  if (query.row === undefined && query.token === undefined) {
    return yield* new InvalidLineageQuery({ message: "give a row (row id or 0-based index) or a token id to explain" })
  }
  // Whatever this program recorded and still buffers belongs in the answer.
  yield* recorder.flush

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

  const row = yield* findRow(sql, runId, query)
  const graph = yield* readTokenGraph(sql, row.row_id)
  const selected = yield* selectToken(graph, runId, row, query)
  const path = pathTo(graph, selected)
  const { steps, transformErrors } = yield* readSteps(sql, path).pipe(
    Effect.mapError(dbError(`reading the steps of token ${selected}`))
  )
  const validationErrors = yield* sql<LineageValidationError>`
    SELECT ve.error_id, n.name AS node, ve.error, ve.schema_mode, ve.destination, ve.row_hash, ve.created_at
    FROM validation_errors ve JOIN nodes n ON n.run_id = ve.run_id AND n.node_id = ve.node_id
    WHERE ve.row_id = ${row.row_id} ORDER BY ve.created_at, ve.error_id`.pipe(
    Effect.mapError(dbError(`reading the validation errors of row ${row.row_id}`))
  )
  const outcome = graph.outcomes.get(selected) ?? null
  const sink = outcome?.sink_name == null ? null : yield* readSink(sql, runId, outcome.sink_name)

  const lineage: Lineage = {
    run,
    row: {
      row_id: row.row_id,
      row_index: row.row_index,
      source: { node_id: row.node_id, name: row.name, node_type: row.node_type, plugin: row.plugin_name },
      data: parseJson(row.source_data_json),
      hash: row.source_data_hash,
      created_at: row.created_at
    },
    tokens: tokenTree(graph),
    token_id: selected,
    path,
    steps,
    transform_errors: transformErrors,
    validation_errors: validationErrors,
    outcome,
    sink
  }
  return lineage
})
