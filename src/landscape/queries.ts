/** Read queries over the Landscape used by the CLI's summaries. */
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"
import { RecorderError } from "../services/recorder.js"

export interface SinkOutcomeCount {
  readonly sink_name: string | null
  readonly outcome: string
  readonly n: number
}

/** Terminal outcomes of a run grouped by sink (null for outcomes without one). */
export const outcomeCountsBySink = (runId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    return yield* sql<SinkOutcomeCount>`
      SELECT sink_name, outcome, COUNT(*) AS n FROM token_outcomes
      WHERE run_id = ${runId} AND is_terminal = 1
      GROUP BY sink_name, outcome ORDER BY sink_name, outcome`
  }).pipe(Effect.mapError((e) => new RecorderError({ reason: "Database", message: `reading outcomes: ${e.message}`, cause: e })))

interface NodeStateCount {
  readonly node_id: string
  readonly name: string
  readonly node_type: string
  readonly plugin_name: string
  readonly status: string | null
  readonly n: number
  readonly duration_ms: number | null
}

interface ArtifactRow {
  readonly sink_name: string
  readonly path_or_uri: string
  readonly size_bytes: number
  readonly content_hash: string
}

/**
 * The figures of a finished run for Telemetry: per sink its terminal outcomes and
 * artifacts, per node its node states by status and their summed duration. One pass
 * over the run's node states and outcomes, read once when the run ends.
 */
export const runSummaries = (runId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const outcomes = yield* sql<SinkOutcomeCount>`
      SELECT sink_name, outcome, COUNT(*) AS n FROM token_outcomes
      WHERE run_id = ${runId} AND is_terminal = 1 AND sink_name IS NOT NULL
      GROUP BY sink_name, outcome ORDER BY sink_name, outcome`
    const artifacts = yield* sql<ArtifactRow>`
      SELECT sink_name, path_or_uri, size_bytes, content_hash FROM artifacts WHERE run_id = ${runId} ORDER BY created_at`
    const nodeRows = yield* sql<Omit<NodeStateCount, "status" | "n" | "duration_ms">>`
      SELECT node_id, name, node_type, plugin_name FROM nodes WHERE run_id = ${runId} ORDER BY sequence`
    // Through the run's tokens (indexed by run), not a scan of every run's node states.
    const counts = yield* sql<{ node_id: string; status: string; n: number; duration_ms: number | null }>`
      SELECT s.node_id, s.status, COUNT(*) AS n, SUM(s.duration_ms) AS duration_ms
      FROM tokens t JOIN node_states s ON s.token_id = t.token_id
      WHERE t.run_id = ${runId}
      GROUP BY s.node_id, s.status ORDER BY s.node_id, s.status`
    const states: Array<NodeStateCount> = []
    for (const node of nodeRows) {
      const own = counts.filter((c) => c.node_id === node.node_id)
      if (own.length === 0) states.push({ ...node, status: null, n: 0, duration_ms: null })
      for (const c of own) states.push({ ...node, status: c.status, n: c.n, duration_ms: c.duration_ms })
    }
    const sinks = new Map<string, { tokens: number; outcomes: Record<string, number>; artifacts: Array<{ path: string; bytes: number; hash: string }> }>()
    const sinkOf = (name: string) => {
      let s = sinks.get(name)
      if (s === undefined) sinks.set(name, s = { tokens: 0, outcomes: {}, artifacts: [] })
      return s
    }
    for (const nodeRow of states) if (nodeRow.node_type === "sink") sinkOf(nodeRow.name)
    for (const o of outcomes) {
      const s = sinkOf(o.sink_name!)
      s.tokens += o.n
      s.outcomes[o.outcome] = o.n
    }
    for (const a of artifacts) sinkOf(a.sink_name).artifacts.push({ path: a.path_or_uri, bytes: a.size_bytes, hash: a.content_hash })
    const nodes = new Map<string, { node: string; nodeType: string; plugin: string; states: Record<string, number>; durationMs: number }>()
    for (const r of states) {
      let n = nodes.get(r.node_id)
      if (n === undefined) nodes.set(r.node_id, n = { node: r.name, nodeType: r.node_type, plugin: r.plugin_name, states: {}, durationMs: 0 })
      if (r.status !== null) n.states[r.status] = r.n
      n.durationMs += r.duration_ms ?? 0
    }
    return {
      sinks: Array.from(sinks, ([sink, s]) => ({ sink, ...s })),
      nodes: Array.from(nodes, ([nodeId, n]) => ({ nodeId, ...n }))
    }
  }).pipe(Effect.mapError((e) => new RecorderError({ reason: "Database", message: `reading the run's summaries: ${e.message}`, cause: e })))
