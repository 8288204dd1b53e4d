/**
 * From the rows `lineage-queries.ts` reads to the parts of a `Lineage`: the token
 * graph of a row, the token the query means, the path to it, the token tree and the
 * steps. Nothing here reads the database.
 */
import { Effect } from "effect"
import type { OutcomeRow, RoutingRow, RowRow, SinkNodeRow, StateRow, TokenLinkRow, TokenRow, TransformErrorRow } from "./lineage-queries.js"
import {
  AmbiguousLineage,
  type LineageArtifact,
  type LineageCandidate,
  type LineageOutcome,
  type LineageQuery,
  type LineageRouting,
  type LineageRow,
  type LineageSink,
  type LineageStep,
  type LineageToken,
  LineageTokenNotFound,
  type LineageTransformError
} from "./lineage-types.js"

/** Stored JSON parsed; text that is not JSON (never written by the engine) is kept as text. */
export const parseJson = (text: string | null): unknown => {
  if (text === null) return null
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

const append = <K, V>(map: Map<K, Array<V>>, key: K, value: V): void => {
  const list = map.get(key)
  if (list === undefined) map.set(key, [value])
  else list.push(value)
}

/** A row given as digits is a `row_index`; anything else a row id. */
export const isRowIndex = (s: string) => /^\d+$/.test(s)

export const describeRow = (row: string) => (isRowIndex(row) ? `row index ${row}` : `row ${row}`)

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

/** The row as the source read it, with its source node. */
export const lineageRow = (row: RowRow): LineageRow => ({
  row_id: row.row_id,
  row_index: row.row_index,
  source: { node_id: row.node_id, name: row.name, node_type: row.node_type, plugin: row.plugin_name },
  data: parseJson(row.source_data_json),
  hash: row.source_data_hash,
  created_at: row.created_at
})

/** The tokens of a row with their parents and outcomes. */
export interface TokenGraph {
  /** In creation order. */
  readonly tokens: ReadonlyArray<TokenRow>
  readonly byId: ReadonlyMap<string, TokenRow>
  readonly parents: ReadonlyMap<string, ReadonlyArray<string>>
  readonly children: ReadonlyMap<string, ReadonlyArray<string>>
  readonly outcomes: ReadonlyMap<string, LineageOutcome>
}

export const tokenGraph = (rows: {
  readonly tokens: ReadonlyArray<TokenRow>
  readonly links: ReadonlyArray<TokenLinkRow>
  readonly outcomes: ReadonlyArray<OutcomeRow>
}): TokenGraph => {
  const parents = new Map<string, Array<string>>()
  const children = new Map<string, Array<string>>()
  for (const l of rows.links) {
    append(parents, l.token_id, l.parent_token_id)
    append(children, l.parent_token_id, l.token_id)
  }
  const outcomes = new Map<string, LineageOutcome>()
  for (const o of rows.outcomes) {
    // A terminal outcome wins over a non-terminal one; among equals, the latest.
    const known = outcomes.get(o.token_id)
    if (known === undefined || !known.is_terminal || o.is_terminal === 1) outcomes.set(o.token_id, toOutcome(o))
  }
  return { tokens: rows.tokens, byId: new Map(rows.tokens.map((t) => [t.token_id, t])), parents, children, outcomes }
}

/** The token to explain: the one asked for, or the row's only leaf (in `sink`, when given). */
export const selectToken = (
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
export const pathTo = (graph: TokenGraph, selected: string): ReadonlyArray<string> => {
  const onPath = new Set<string>()
  const visit = (id: string) => {
    if (onPath.has(id)) return
    onPath.add(id)
    for (const p of graph.parents.get(id) ?? []) if (graph.byId.has(p)) visit(p)
  }
  visit(selected)
  return graph.tokens.map((t) => t.token_id).filter((id) => onPath.has(id))
}

/** The row's tokens as a tree, each under its first parent within the row. */
export const tokenTree = (graph: TokenGraph): ReadonlyArray<LineageToken> => {
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

/** The node states of the tokens on `path` with their routing decisions: ancestors first, each in step order. */
export const lineageSteps = (
  path: ReadonlyArray<string>,
  states: ReadonlyArray<StateRow>,
  routings: ReadonlyArray<RoutingRow>
): ReadonlyArray<LineageStep> => {
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
  return states
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
}

export const lineageTransformErrors = (rows: ReadonlyArray<TransformErrorRow>): ReadonlyArray<LineageTransformError> =>
  rows.map(({ error_details_json, ...rest }) => ({ ...rest, details: parseJson(error_details_json) }))

export const lineageSink = (name: string, node: SinkNodeRow | undefined, artifacts: ReadonlyArray<LineageArtifact>): LineageSink => ({
  name,
  node_id: node?.node_id ?? null,
  plugin: node?.plugin_name ?? null,
  artifacts
})
