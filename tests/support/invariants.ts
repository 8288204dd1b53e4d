/**
 * `assertLandscapeInvariants(runId)`: the invariants of the audit trail (DESIGN.md),
 * checked straight from the tables. Every pipeline test calls it after its run,
 * including failed and interrupted runs.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { parseStateJson } from "../../src/core/state-json.js"
import type { CheckpointState } from "../../src/pipeline/orchestrator/checkpoint-state.js"

const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

export class InvariantViolation extends Error {}

const violated = (runId: string, what: string, detail?: unknown): never => {
  throw new InvariantViolation(`Landscape invariant violated for ${runId}: ${what}${detail === undefined ? "" : ` — ${JSON.stringify(detail).slice(0, 800)}`}`)
}

export const assertLandscapeInvariants = (runId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [run] = yield* sql<{ status: string; started_at: string; completed_at: string | null; result_json: string | null }>`
      SELECT status, started_at, completed_at, result_json FROM runs WHERE run_id = ${runId}`
    if (run === undefined) return violated(runId, "the run does not exist")
    if (!ISO_MS.test(run.started_at)) violated(runId, "started_at is not ISO-8601 UTC with ms", run.started_at)
    const finished = run.status !== "running"
    if (finished && (run.completed_at === null || !ISO_MS.test(run.completed_at))) {
      violated(runId, "a finished run has no ISO completed_at", run.completed_at)
    }

    const fkProblems = yield* sql.unsafe<Record<string, unknown>>(`PRAGMA foreign_key_check`)
    if (fkProblems.length > 0) violated(runId, "foreign key check failed", fkProblems.slice(0, 5))

    // At most one terminal outcome per token (the schema enforces it; check anyway).
    const doubles = yield* sql<{ token_id: string; n: number }>`
      SELECT token_id, COUNT(*) AS n FROM token_outcomes
      WHERE run_id = ${runId} AND is_terminal = 1 GROUP BY token_id HAVING COUNT(*) > 1 LIMIT 5`
    if (doubles.length > 0) violated(runId, "tokens with more than one terminal outcome", doubles)

    // Every row has a root token (a token without parents).
    const rootless = yield* sql<{ row_id: string }>`
      SELECT r.row_id FROM rows r WHERE r.run_id = ${runId} AND NOT EXISTS (
        SELECT 1 FROM tokens t WHERE t.row_id = r.row_id
          AND NOT EXISTS (SELECT 1 FROM token_parents p WHERE p.token_id = t.token_id)) LIMIT 5`
    if (rootless.length > 0) violated(runId, "rows without a root token", rootless)

    // Token outcomes name tokens of this run.
    const foreign = yield* sql<{ token_id: string }>`
      SELECT o.token_id FROM token_outcomes o JOIN tokens t ON t.token_id = o.token_id
      WHERE o.run_id = ${runId} AND t.run_id <> o.run_id LIMIT 5`
    if (foreign.length > 0) violated(runId, "outcomes recorded under another run", foreign)

    const badTimes = yield* sql<{ state_id: string; started_at: string }>`
      SELECT state_id, started_at FROM node_states WHERE run_id = ${runId}
      AND (started_at NOT GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z') LIMIT 5`
    if (badTimes.length > 0) violated(runId, "node state timestamps are not ISO-8601 with ms", badTimes)

    // Sink outcomes name a sink.
    const sinkless = yield* sql<{ token_id: string; outcome: string }>`
      SELECT token_id, outcome FROM token_outcomes WHERE run_id = ${runId}
      AND outcome IN ('COMPLETED', 'ROUTED') AND sink_name IS NULL LIMIT 5`
    if (sinkless.length > 0) violated(runId, "COMPLETED/ROUTED outcomes without a sink", sinkless)

    // A DIVERTED token (on_write_failure) has a failed node state at the sink that could
    // not write it. Diverted to a failsink, it also has a completed node state at that
    // failsink and a divert routing event from the failed state along the sink's
    // on_write_failure edge to it; discarded, it reached no sink at all.
    const divertedNoFailedSink = yield* sql<{ token_id: string }>`
      SELECT o.token_id FROM token_outcomes o WHERE o.run_id = ${runId} AND o.outcome = 'DIVERTED'
      AND NOT EXISTS (SELECT 1 FROM node_states s JOIN nodes n ON n.run_id = s.run_id AND n.node_id = s.node_id
        WHERE s.token_id = o.token_id AND s.status = 'failed' AND n.node_type = 'sink') LIMIT 5`
    if (divertedNoFailedSink.length > 0) violated(runId, "DIVERTED tokens without a failed sink state", divertedNoFailedSink)
    const divertedUnwritten = yield* sql<{ token_id: string }>`
      SELECT o.token_id FROM token_outcomes o WHERE o.run_id = ${runId} AND o.outcome = 'DIVERTED' AND o.sink_name IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM node_states s JOIN nodes n ON n.run_id = s.run_id AND n.node_id = s.node_id
        WHERE s.token_id = o.token_id AND s.status = 'completed' AND n.node_type = 'sink' AND n.name = o.sink_name) LIMIT 5`
    if (divertedUnwritten.length > 0) violated(runId, "DIVERTED tokens without a completed state at their failsink", divertedUnwritten)
    const divertedUnrouted = yield* sql<{ token_id: string }>`
      SELECT o.token_id FROM token_outcomes o WHERE o.run_id = ${runId} AND o.outcome = 'DIVERTED' AND o.sink_name IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM node_states s JOIN routing_events e ON e.state_id = s.state_id
        JOIN edges g ON g.edge_id = e.edge_id JOIN nodes n ON n.run_id = g.run_id AND n.node_id = g.to_node_id
        WHERE s.token_id = o.token_id AND s.status = 'failed' AND s.node_id = g.from_node_id
          AND e.mode = 'divert' AND g.label = 'on_write_failure' AND n.name = o.sink_name) LIMIT 5`
    if (divertedUnrouted.length > 0) violated(runId, "DIVERTED tokens without an on_write_failure routing event to their failsink", divertedUnrouted)
    const discardedWritten = yield* sql<{ token_id: string }>`
      SELECT o.token_id FROM token_outcomes o WHERE o.run_id = ${runId} AND o.outcome = 'DIVERTED' AND o.sink_name IS NULL
      AND EXISTS (SELECT 1 FROM node_states s JOIN nodes n ON n.run_id = s.run_id AND n.node_id = s.node_id
        WHERE s.token_id = o.token_id AND s.status = 'completed' AND n.node_type = 'sink') LIMIT 5`
    if (discardedWritten.length > 0) violated(runId, "discarded DIVERTED tokens with a completed sink state", discardedWritten)

    // The hash chain: a token's node state, after a completed one, starts from the row that
    // one produced (its input hash is the previous output hash). A failed state is not
    // followed this way: a retry, an on_error sink or a failsink starts from the row as it
    // was, or as enriched for the failsink.
    const states = yield* sql<{ token_key: number; state_id: string; status: string; input_hash: string; output_hash: string | null }>`
      SELECT s.token_key, s.state_id, s.status, s.input_hash, s.output_hash
      FROM ls_node_states s JOIN runs r ON r.run_key = s.run_key
      WHERE r.run_id = ${runId} ORDER BY s.token_key, s.state_key`
    for (let i = 1; i < states.length; i++) {
      const prev = states[i - 1]!
      const next = states[i]!
      if (prev.token_key !== next.token_key || prev.status !== "completed") continue
      if (next.input_hash !== prev.output_hash) {
        violated(runId, `node state ${next.state_id} starts from another row than ${prev.state_id} produced`, {
          produced: prev.output_hash,
          input: next.input_hash
        })
      }
    }

    if (!finished) return
    const open = yield* sql<{ state_id: string }>`
      SELECT state_id FROM node_states WHERE run_id = ${runId} AND status = 'open' LIMIT 5`
    if (open.length > 0) violated(runId, "node states left open after the run ended", open)

    // Conservation: every token of the run reached exactly one terminal outcome — except,
    // in a run interrupted with checkpoints, the tokens its last checkpoint holds in
    // aggregation buffers and coalesce groups: a resume continues them.
    const resumable = new Set<string>()
    if (run.status === "interrupted") {
      const [cp] = yield* sql<{ state_json: string | null }>`
        SELECT state_json FROM checkpoints WHERE run_id = ${runId} ORDER BY sequence_number DESC LIMIT 1`
      if (cp?.state_json != null) {
        const state = parseStateJson(cp.state_json) as CheckpointState
        for (const b of state.aggregations) for (const t of b.members) resumable.add(t.tokenId)
        for (const g of state.coalesces) for (const a of g.arrived) resumable.add(a.token.tokenId)
      }
    }
    const unfinished = (yield* sql<{ token_id: string }>`
      SELECT t.token_id FROM tokens t WHERE t.run_id = ${runId} AND NOT EXISTS (
        SELECT 1 FROM token_outcomes o WHERE o.token_id = t.token_id AND o.is_terminal = 1)`).filter((t) => !resumable.has(t.token_id))
    if (unfinished.length > 0) violated(runId, "tokens without a terminal outcome", unfinished.slice(0, 5))

    // Durability: a sink that received COMPLETED/ROUTED/QUARANTINED/DIVERTED rows of a completed run has an artifact.
    if (run.status === "completed") {
      const missing = yield* sql<{ sink_name: string }>`
        SELECT DISTINCT o.sink_name FROM token_outcomes o WHERE o.run_id = ${runId} AND o.sink_name IS NOT NULL
        AND o.outcome IN ('COMPLETED', 'ROUTED', 'QUARANTINED', 'DIVERTED')
        AND NOT EXISTS (SELECT 1 FROM artifacts a WHERE a.run_id = o.run_id AND a.sink_name = o.sink_name)`
      if (missing.length > 0) violated(runId, "sinks with outcomes but no artifact", missing)
    }

    // The stored RunResult equals the outcomes in the trail.
    if (run.result_json !== null) {
      const result = JSON.parse(run.result_json) as Record<string, unknown>
      const [rows] = yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM rows WHERE run_id = ${runId}`
      if (typeof result.rows_processed === "number" && result.rows_processed !== rows!.n) {
        violated(runId, `RunResult.rows_processed ${result.rows_processed} differs from ${rows!.n} rows in the trail`)
      }
      const counts = yield* sql<{ outcome: string; n: number }>`
        SELECT outcome, COUNT(*) AS n FROM token_outcomes WHERE run_id = ${runId} AND is_terminal = 1 GROUP BY outcome`
      const byOutcome = new Map(counts.map((c) => [c.outcome, c.n]))
      const pairs: ReadonlyArray<readonly [string, string]> = [
        ["rows_succeeded", "COMPLETED"],
        ["rows_routed", "ROUTED"],
        ["rows_quarantined", "QUARANTINED"],
        ["rows_diverted", "DIVERTED"],
        ["rows_failed", "FAILED"],
        ["rows_forked", "FORKED"],
        ["rows_coalesced", "COALESCED"],
        ["rows_expanded", "EXPANDED"]
      ]
      for (const [field, outcome] of pairs) {
        const expected = byOutcome.get(outcome) ?? 0
        if (typeof result[field] === "number" && result[field] !== expected) {
          violated(runId, `RunResult.${field} = ${String(result[field])} but the trail has ${expected} ${outcome}`)
        }
      }
    }
  })
