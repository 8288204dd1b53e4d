/**
 * Lineage (`explain`): everything the Landscape recorded about one source row and one
 * of its tokens — the row as read, the tokens derived from it, every node state on the
 * path from the source to the token's outcome, the routing decisions with their
 * reasons, the errors, and the sink that received it.
 *
 * The question and the answer's shape are in `lineage-types.ts`, the reads in
 * `lineage-queries.ts` (a fixed number per explanation, never one per state, so
 * explaining a row costs the same whatever the size of the run) and the assembly of
 * their rows in `lineage-assembly.ts`. The text the CLI prints is `cli/explain.ts`.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"
import { Recorder } from "../services/recorder.js"
import {
  describeRow,
  isRowIndex,
  lineageRow,
  lineageSink,
  lineageSteps,
  lineageTransformErrors,
  pathTo,
  selectToken,
  tokenGraph,
  tokenTree
} from "./lineage-assembly.js"
import { DEFAULT_PAYLOAD_BASE_PATH } from "../services/call-store.js"
import { payloadStoreOfRun, readCalls } from "./lineage-calls.js"
import * as Queries from "./lineage-queries.js"
import {
  InvalidLineageQuery,
  type Lineage,
  type LineageQuery,
  LineageRowNotFound,
  LineageRunNotFound,
  LineageTokenNotFound
} from "./lineage-types.js"

export * from "./lineage-types.js"

/** The row asked for, directly or through one of its tokens. */
const findRow = (sql: SqlClient.SqlClient, runId: string, query: LineageQuery) =>
  Effect.gen(function*() {
    let tokenRowId: string | undefined
    if (query.token !== undefined) {
      tokenRowId = yield* Queries.rowOfToken(sql, runId, query.token)
      if (tokenRowId === undefined) {
        return yield* new LineageTokenNotFound({
          runId,
          token: query.token,
          sink: query.sink ?? null,
          message: `no token ${query.token} in run ${runId}`
        })
      }
    }
    const requested = query.row ?? tokenRowId!
    const row = yield* Queries.readRow(
      sql,
      runId,
      query.row !== undefined && isRowIndex(query.row) ? { index: Number(query.row) } : { id: requested }
    )
    if (row === undefined) {
      const count = yield* Queries.rowIndexRange(sql, runId)
      const range = count.n === 0
        ? `run ${runId} recorded no rows`
        : `valid row indexes of run ${runId} are ${count.first}…${count.last}`
      return yield* new LineageRowNotFound({
        runId,
        row: requested,
        rowCount: count.n,
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
  const run = yield* Queries.readRun(sql, runId)
  if (run === undefined) return yield* new LineageRunNotFound({ runId, message: `no run with id ${runId} in this Landscape` })

  const row = yield* findRow(sql, runId, query)
  const graph = tokenGraph(yield* Queries.readTokenRows(sql, row.row_id))
  const selected = yield* selectToken(graph, runId, row, query)
  const path = pathTo(graph, selected)
  const { errors, routings, states } = yield* Queries.readStepRows(sql, selected, path)
  const validationErrors = yield* Queries.readValidationErrors(sql, row.row_id)
  const outcome = graph.outcomes.get(selected) ?? null
  const sinkName = outcome?.sink_name ?? null
  const sink = sinkName === null
    ? null
    : yield* Effect.map(Queries.readSinkRows(sql, runId, sinkName), ({ artifacts, node }) => lineageSink(sinkName, node, artifacts))

  const settings = yield* sql<{ settings_json: string | null }>`SELECT settings_json FROM runs WHERE run_id = ${runId}`.pipe(
    Effect.mapError(Queries.dbError(`reading the settings of run ${runId}`))
  )
  const calls = yield* readCalls(
    sql,
    states.map((s) => s.state_id),
    payloadStoreOfRun(settings[0]?.settings_json ?? null, query.payloadDir, DEFAULT_PAYLOAD_BASE_PATH)
  )

  const lineage: Lineage = {
    run,
    row: lineageRow(row),
    tokens: tokenTree(graph),
    token_id: selected,
    path,
    steps: lineageSteps(path, states, routings),
    transform_errors: lineageTransformErrors(errors),
    validation_errors: validationErrors,
    outcome,
    sink,
    calls
  }
  return lineage
})
