/**
 * The reads of the explorer (`runledger serve`) and the MCP server (`runledger mcp`), each a page or a fixed number of
 * small queries: runs a page at a time, a run's graph and its counts, its rows a page
 * at a time (keyset on `rows(run_id, row_index)`), its batches a page at a time, a loop
 * run's issues and stages. Row lineage is `landscape/lineage.ts` (the same code as
 * `runledger explain`); loop runs use the readers of `landscape/loop-recorder.ts`.
 *
 * The aggregates of a run page (rows, outcomes, outcomes per sink, batches, and the one
 * with no index to use, the node-state count per node behind the per-edge counts) are
 * computed once per finished run and kept (a finished run's trail does not change); a
 * running run's are recomputed on each view.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import { type LoopCommandRow, readLoopCommands, readLoopIssues, readLoopRun } from "./loop-recorder.js"
import { listLoopStages } from "../services/loop-recorder.js"
import { OUTCOMES, type Outcome } from "../services/records.js"
import { RecorderError } from "../services/recorder.js"

const dbError = (what: string) => (e: SqlError) =>
  new RecorderError({ reason: "Database", message: `${what}: ${String((e.cause as { message?: unknown } | undefined)?.message ?? e.message)}`, cause: e })

export const isOutcome = (value: string): value is Outcome => (OUTCOMES as ReadonlyArray<string>).includes(value)

// ---------------------------------------------------------------------------
// Runs

export type RunKind = "pipeline" | "loop"

export interface RunListItem {
  readonly run_id: string
  readonly kind: RunKind
  readonly status: string
  readonly reason: string | null
  readonly started_at: string
  readonly completed_at: string | null
  readonly duration_ms: number | null
  /** Pipelines: `rows` and each terminal outcome; loops: total, success, failed, interrupted, skipped. */
  readonly counts: Readonly<Record<string, number>>
}

export interface RunListQuery {
  readonly status?: string | undefined
  readonly kind?: RunKind | undefined
  readonly limit: number
  readonly offset: number
}

export const elapsedMs = (from: string | null, to: string | null): number | null =>
  from === null || to === null ? null : Date.parse(to) - Date.parse(from)

/** A run's terminal outcomes by kind, from the compact table's (run, outcome) index alone. */
export const OUTCOME_COUNTS_SQL = `SELECT outcome, COUNT(*) AS n FROM ls_token_outcomes
  WHERE run_key = (SELECT run_key FROM runs WHERE run_id = ?) AND outcome <> 'BUFFERED' GROUP BY outcome`

export const outcomeCounts = (runId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.unsafe<{ outcome: Outcome; n: number }>(OUTCOME_COUNTS_SQL, [runId])).pipe(
    Effect.map((rows) => Object.fromEntries(rows.map((r) => [r.outcome, r.n])) as Partial<Record<Outcome, number>>),
    Effect.mapError(dbError(`counting the outcomes of run ${runId}`))
  )

export const rowCount = (runId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ n: number }>`SELECT COUNT(*) AS n FROM ls_rows WHERE run_key = (SELECT run_key FROM runs WHERE run_id = ${runId})`).pipe(
    Effect.map((rows) => rows[0]?.n ?? 0),
    Effect.mapError(dbError(`counting the rows of run ${runId}`))
  )

/** One page of the runs, pipelines and loops, newest first, with the page's counts. */
export const listRunsPage = (query: RunListQuery, cache?: GraphCountCache) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const where: Array<string> = []
    const params: Array<unknown> = []
    if (query.kind !== undefined) {
      where.push("kind = ?")
      params.push(query.kind)
    }
    if (query.status !== undefined) {
      where.push("status = ?")
      params.push(query.status)
    }
    const all = `SELECT run_id, 'pipeline' AS kind, status, error_message AS reason, started_at, completed_at FROM runs
      UNION ALL SELECT run_id, 'loop' AS kind, status, reason, started_at, completed_at FROM loop_runs`
    const filter = where.length === 0 ? "" : `WHERE ${where.join(" AND ")}`
    const page = yield* sql.unsafe<Omit<RunListItem, "counts" | "duration_ms">>(
      `SELECT * FROM (${all}) ${filter} ORDER BY started_at DESC, run_id DESC LIMIT ? OFFSET ?`,
      [...params, query.limit, query.offset]
    )
    const [total] = yield* sql.unsafe<{ n: number }>(`SELECT COUNT(*) AS n FROM (${all}) ${filter}`, params)
    const loopIds = page.filter((r) => r.kind === "loop").map((r) => r.run_id)
    const loopCounts = loopIds.length === 0 ? [] : yield* sql<Record<string, number> & { run_id: string }>`
      SELECT run_id, total_count AS total, success_count AS success, failed_count AS failed,
             interrupted_count AS interrupted, skipped_count AS skipped
      FROM loop_runs WHERE ${sql.in("run_id", loopIds)}`
    const runs: Array<RunListItem> = []
    for (const r of page) {
      let counts: Record<string, number>
      if (r.kind === "loop") {
        const { run_id: _, ...c } = loopCounts.find((l) => l.run_id === r.run_id) ?? { run_id: r.run_id }
        counts = c
      } else {
        const known = cache?.get(r.run_id)
        counts = known !== undefined
          ? { rows: known.rows, ...known.outcomes }
          : { rows: yield* rowCount(r.run_id), ...(yield* outcomeCounts(r.run_id)) }
      }
      runs.push({ ...r, reason: r.reason === null ? null : firstLine(r.reason), duration_ms: elapsedMs(r.started_at, r.completed_at), counts })
    }
    return { runs, total: total?.n ?? 0 }
  }).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(dbError("listing runs")(e))))

/** A reason cut to its first line (the full text is on the run's page). */
export const firstLine = (text: string): string => {
  const line = text.split("\n", 1)[0] ?? ""
  return line.length > 200 ? `${line.slice(0, 199)}…` : line
}

/** Which table a run id belongs to, or undefined. */
export const runKindOf = (runId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ kind: RunKind }>`
      SELECT 'pipeline' AS kind FROM runs WHERE run_id = ${runId}
      UNION ALL SELECT 'loop' AS kind FROM loop_runs WHERE run_id = ${runId}`).pipe(
    Effect.map((rows) => rows[0]?.kind),
    Effect.mapError(dbError(`finding run ${runId}`))
  )

// ---------------------------------------------------------------------------
// A pipeline run

export interface RunRecord {
  readonly run_id: string
  readonly status: string
  readonly started_at: string
  readonly completed_at: string | null
  readonly config_hash: string
  readonly settings_json: string
  readonly canonical_version: string
  readonly error_message: string | null
  readonly result_json: string | null
  readonly export_status: string | null
  readonly export_error: string | null
  readonly export_format: string | null
  readonly export_sink: string | null
  readonly exported_at: string | null
}

export interface NodeRecord {
  readonly node_id: string
  readonly name: string
  readonly node_type: string
  readonly plugin_name: string
  readonly sequence: number
  readonly config_json: string
}

export interface EdgeRecord {
  readonly edge_id: string
  readonly from_node_id: string
  readonly to_node_id: string
  readonly label: string
  readonly mode: string
}

export interface RunGraphCounts {
  /** Tokens that had a node state at each node. */
  readonly nodes: Readonly<Record<string, number>>
  /** Tokens that went along each edge; null where the trail cannot tell edges into one node apart. */
  readonly edges: Readonly<Record<string, number | null>>
}

export interface SinkOutcome {
  readonly sink_name: string | null
  readonly outcome: string
  readonly n: number
}

export interface RunDetail {
  readonly run: RunRecord
  readonly nodes: ReadonlyArray<NodeRecord>
  readonly edges: ReadonlyArray<EdgeRecord>
  readonly counts: RunGraphCounts
  readonly rows: number
  readonly outcomes: Partial<Record<Outcome, number>>
  readonly sinks: ReadonlyArray<SinkOutcome>
  readonly artifacts: ReadonlyArray<Record<string, unknown>>
  readonly batch_count: number
}

/** The aggregates of a run (its counts), which do not change once the run has finished. */
export interface RunStats {
  readonly counts: RunGraphCounts
  readonly rows: number
  readonly outcomes: Partial<Record<Outcome, number>>
  readonly sinks: ReadonlyArray<SinkOutcome>
  readonly batch_count: number
}

/** The aggregates of finished runs, computed once each. */
export type GraphCountCache = Map<string, RunStats>
export const makeGraphCountCache = (): GraphCountCache => new Map()

const graphCounts = (runId: string, edges: ReadonlyArray<EdgeRecord>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const perNode = yield* sql<{ node_id: string; n: number }>`
      SELECT n.node_id, COUNT(*) AS n FROM ls_node_states s JOIN nodes n ON n.node_key = s.node_key
      WHERE s.run_key = (SELECT run_key FROM runs WHERE run_id = ${runId}) AND s.attempt = 1 GROUP BY s.node_key`
    // Routing events (read in one pass: they have no index by edge) are needed only to
    // tell apart the edges into a node that several edges lead to.
    const incomingCount = new Map<string, number>()
    for (const e of edges) incomingCount.set(e.to_node_id, (incomingCount.get(e.to_node_id) ?? 0) + 1)
    const routed = [...incomingCount.values()].every((n) => n <= 1) ? [] : yield* sql<{ edge_id: string; n: number }>`
      SELECT e.edge_id, COUNT(*) AS n FROM ls_routing_events r JOIN edges e ON e.edge_key = r.edge_key
      WHERE e.run_id = ${runId} GROUP BY r.edge_key`
    const nodes = Object.fromEntries(perNode.map((r) => [r.node_id, r.n]))
    const routedBy = new Map(routed.map((r) => [r.edge_id, r.n]))
    const result: Record<string, number | null> = {}
    // An edge with routing events has its exact count; the tokens that reached a node
    // and were not routed there came along its other incoming edges, which are told
    // apart only when there is one of them.
    for (const target of new Set(edges.map((e) => e.to_node_id))) {
      const incoming = edges.filter((e) => e.to_node_id === target)
      const unrouted = incoming.filter((e) => !routedBy.has(e.edge_id))
      const routedIn = incoming.reduce((sum, e) => sum + (routedBy.get(e.edge_id) ?? 0), 0)
      const rest = Math.max(0, (nodes[target] ?? 0) - routedIn)
      for (const e of incoming) {
        result[e.edge_id] = routedBy.has(e.edge_id) ? routedBy.get(e.edge_id)! : unrouted.length === 1 || rest === 0 ? rest : null
      }
    }
    return { nodes, edges: result } satisfies RunGraphCounts
  })

/** A pipeline run with its graph, counts, sinks and artifacts; undefined for an unknown id. */
export const runDetail = (runId: string, cache: GraphCountCache) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [stored] = yield* sql<RunRecord & { readonly run_key?: number }>`SELECT * FROM runs WHERE run_id = ${runId}`
    if (stored === undefined) return undefined
    // The run's integer key is how the Landscape stores it, not part of the run.
    const { run_key: _key, ...run } = stored
    const nodes = yield* sql<NodeRecord>`
      SELECT node_id, name, node_type, plugin_name, sequence, config_json FROM nodes WHERE run_id = ${runId} ORDER BY sequence`
    const edges = yield* sql<EdgeRecord>`
      SELECT edge_id, from_node_id, to_node_id, label, mode FROM edges WHERE run_id = ${runId} ORDER BY edge_id`
    let stats = cache.get(runId)
    if (stats === undefined) {
      const counts = yield* graphCounts(runId, edges)
      const sinks = yield* sql<SinkOutcome>`
        SELECT sink_name, outcome, COUNT(*) AS n FROM token_outcomes
        WHERE run_id = ${runId} AND is_terminal = 1 GROUP BY sink_name, outcome ORDER BY sink_name, outcome`
      const [batches] = yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM batches WHERE run_id = ${runId}`
      stats = { counts, sinks, rows: yield* rowCount(runId), outcomes: yield* outcomeCounts(runId), batch_count: batches?.n ?? 0 }
      if (run.status !== "running") cache.set(runId, stats)
    }
    const artifacts = yield* sql<Record<string, unknown>>`
      SELECT artifact_id, sink_name, artifact_type, path_or_uri, content_hash, size_bytes, created_at
      FROM artifacts WHERE run_id = ${runId} ORDER BY created_at, artifact_id LIMIT 200`
    const detail: RunDetail = { run, nodes, edges, ...stats, artifacts }
    return detail
  }).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(dbError(`reading run ${runId}`)(e))))

export interface BatchRecord {
  readonly batch_id: string
  readonly aggregation_node_id: string
  readonly aggregation: string
  readonly trigger_type: string | null
  readonly trigger_reason: string | null
  readonly status: string
  readonly attempt: number
  readonly created_at: string
  readonly completed_at: string | null
  readonly members: number
}

/** A page of a run's batches, oldest first (the batches_run index). */
export const batchesPage = (runId: string, limit: number, offset: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<BatchRecord>`
      SELECT b.batch_id, b.aggregation_node_id, n.name AS aggregation, b.trigger_type, b.trigger_reason, b.status,
             b.attempt, b.created_at, b.completed_at,
             (SELECT COUNT(*) FROM batch_members m WHERE m.batch_id = b.batch_id) AS members
      FROM batches b JOIN nodes n ON n.run_id = b.run_id AND n.node_id = b.aggregation_node_id
      WHERE b.run_id = ${runId} ORDER BY b.created_at, b.batch_id LIMIT ${limit} OFFSET ${offset}`).pipe(
    Effect.mapError(dbError(`reading the batches of run ${runId}`))
  )

/** The batches the given tokens are members of (batch_members_token). */
export const batchMemberships = (tokenIds: ReadonlyArray<string>) =>
  tokenIds.length === 0 ? Effect.succeed([]) : Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ token_id: string; batch_id: string; ordinal: number; aggregation: string; trigger_type: string | null; trigger_reason: string | null; status: string }>`
      SELECT m.token_id, m.batch_id, m.ordinal, n.name AS aggregation, b.trigger_type, b.trigger_reason, b.status
      FROM batch_members m JOIN batches b ON b.batch_id = m.batch_id
      JOIN nodes n ON n.run_id = b.run_id AND n.node_id = b.aggregation_node_id
      WHERE ${sql.in("m.token_id", tokenIds)} ORDER BY m.token_id, b.created_at`).pipe(
    Effect.mapError(dbError("reading batch memberships"))
  )

// ---------------------------------------------------------------------------
// Rows, a page at a time

export interface RowListItem {
  readonly row_id: string
  readonly row_index: number
  readonly source_data_hash: string
  readonly source_data_json: string
  readonly outcomes: ReadonlyArray<{ readonly token_id: string; readonly outcome: string; readonly sink_name: string | null }>
}

export interface RowPageQuery {
  /** Only rows with a token that reached this terminal outcome. */
  readonly outcome?: Outcome | undefined
  /** Only rows with a token whose terminal outcome went to this sink. */
  readonly sink?: string | undefined
  /** Only rows whose source data has this value at this top-level field (compared as text). */
  readonly field?: { readonly name: string; readonly value: string } | undefined
  /** The first row index of the page (keyset). */
  readonly from: number
  readonly limit: number
}

/** The run's integer key from its id (the statement's first parameter). */
const RUN_KEY = "(SELECT run_key FROM runs WHERE run_id = ?)"

/**
 * The SQL of one page of rows. Filtered by an outcome that few rows reached (a tenth
 * or less), the page is found from the outcome's index (ls_token_outcomes_run) and
 * sorted; otherwise rows are walked in row_index order and each is checked through its
 * tokens. Both read the compact tables (schema v2) by the run's key and use indexes
 * only (tests assert the plans).
 */
export const rowPageStatement = (runId: string, query: RowPageQuery, selective: boolean): { readonly text: string; readonly params: Array<unknown> } => {
  const params: Array<unknown> = []
  const outcomeCond: Array<string> = []
  if (query.outcome !== undefined) {
    outcomeCond.push("o.outcome = ?")
    params.push(query.outcome)
  }
  if (query.sink !== undefined) {
    outcomeCond.push("o.sink_name = ?")
    params.push(query.sink)
  }
  const fieldCond = query.field === undefined ? "" : "AND CAST(json_extract(r.source_data_json, ?) AS TEXT) = ?"
  const fieldParams = query.field === undefined ? [] : [`$.${JSON.stringify(query.field.name)}`, query.field.value]
  const columns = "r.row_id, r.row_index, r.source_data_hash, r.source_data_json"
  if (outcomeCond.length === 0) {
    return {
      text: `SELECT ${columns} FROM ls_rows r WHERE r.run_key = ${RUN_KEY} AND r.row_index >= ? ${fieldCond} ORDER BY r.row_index LIMIT ?`,
      params: [runId, query.from, ...fieldParams, query.limit]
    }
  }
  if (selective && query.outcome !== undefined) {
    return {
      // CROSS JOIN fixes the order: from the few outcomes of that kind to their rows.
      text: `SELECT DISTINCT ${columns} FROM ls_token_outcomes o
        CROSS JOIN ls_tokens t ON t.token_key = o.token_key CROSS JOIN ls_rows r ON r.row_key = t.row_key
        WHERE o.run_key = ${RUN_KEY} AND o.is_terminal = 1 AND ${outcomeCond.join(" AND ")} AND r.row_index >= ? ${fieldCond}
        ORDER BY r.row_index LIMIT ?`,
      params: [runId, ...params, query.from, ...fieldParams, query.limit]
    }
  }
  return {
    text: `SELECT ${columns} FROM ls_rows r WHERE r.run_key = ${RUN_KEY} AND r.row_index >= ? ${fieldCond}
      AND EXISTS (SELECT 1 FROM ls_tokens t JOIN ls_token_outcomes o ON o.token_key = t.token_key
                  WHERE t.row_key = r.row_key AND o.is_terminal = 1 AND ${outcomeCond.join(" AND ")})
      ORDER BY r.row_index LIMIT ?`,
    params: [runId, query.from, ...fieldParams, ...params, query.limit]
  }
}

/**
 * One page of a run's rows with their tokens' terminal outcomes; `next` is the first
 * row index of the next page. `knownOutcomes`: the run's outcome counts, when already
 * at hand (they pick the plan of an outcome filter).
 */
export const rowsPage = (runId: string, query: RowPageQuery, knownOutcomes?: Partial<Record<Outcome, number>>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    let selective = false
    if (query.outcome !== undefined) {
      const counts = knownOutcomes ?? (yield* outcomeCounts(runId))
      const total = Object.values(counts).reduce((a, b) => a + (b ?? 0), 0)
      selective = (counts[query.outcome] ?? 0) * 10 <= total
    }
    const statement = rowPageStatement(runId, { ...query, limit: query.limit + 1 }, selective)
    const found = yield* sql.unsafe<Omit<RowListItem, "outcomes">>(statement.text, statement.params)
    const page = found.slice(0, query.limit)
    const ids = page.map((r) => r.row_id)
    const outcomes = ids.length === 0 ? [] : yield* sql<{ row_id: string; token_id: string; outcome: string; sink_name: string | null }>`
      SELECT t.row_id, o.token_id, o.outcome, o.sink_name FROM tokens t JOIN token_outcomes o ON o.token_id = t.token_id
      WHERE ${sql.in("t.row_id", ids)} AND o.is_terminal = 1 ORDER BY o.recorded_at`
    const rows: Array<RowListItem> = page.map((r) => ({
      ...r,
      outcomes: outcomes.filter((o) => o.row_id === r.row_id).map(({ row_id: _, ...o }) => o)
    }))
    const next = found.length > query.limit ? found[query.limit]!.row_index : null
    return { rows, next }
  }).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(dbError(`reading the rows of run ${runId}`)(e))))

/** The query plan SQLite picks for a statement (EXPLAIN QUERY PLAN), one detail line per step. */
export const queryPlan = (text: string, params: ReadonlyArray<unknown>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe<{ detail: string }>(`EXPLAIN QUERY PLAN ${text}`, params as Array<unknown>)).pipe(
    Effect.map((rows) => rows.map((r) => r.detail)),
    Effect.mapError(dbError("explaining a query"))
  )

// ---------------------------------------------------------------------------
// A loop run

/** A loop run with its issues, stages and commands (output tails); undefined for an unknown id. */
export const loopDetail = (runId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const run = yield* readLoopRun(runId)
    if (run === undefined || run.run_id !== runId) return undefined
    const [extra] = yield* sql<Record<string, unknown>>`
      SELECT base_sha, integration_strategy, integration_branch, integration_head, attempts, resumed_at,
             export_status, export_error, export_format, exported_at, config_json
      FROM loop_runs WHERE run_id = ${runId}`.pipe(Effect.mapError(dbError(`reading loop run ${runId}`)))
    const issues = yield* readLoopIssues(runId)
    const stages = yield* listLoopStages(runId)
    const ids = [...new Set([...issues.map((i) => i.issue_id), ...stages.flatMap((s) => (s.issue_id === null ? [] : [s.issue_id]))])]
    const commands = new Map<string | null, ReadonlyArray<LoopCommandRow>>()
    for (const id of [...ids, null]) commands.set(id, yield* readLoopCommands(runId, id))
    return { run, extra: extra ?? {}, issues, stages, commands }
  })
