/**
 * The Landscape side of `resume` (the ResumeStore port): reads a run, its last
 * checkpoint and its attempts; opens a new attempt; closes what a crashed attempt
 * left open. Every write is one short transaction.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Layer } from "effect"
import { hostname } from "node:os"
import { canonicalJsonUnsafe, sha256Hex } from "../core/canonical.js"
import { newOutcomeId, type RunId } from "../core/ids.js"
import { RecorderError } from "../services/recorder.js"
import type { RunStatus } from "../services/records.js"
import { type CheckpointView, type ResumeCandidate, ResumeStore, type RunAttemptView } from "../services/resume-store.js"
import { ownerIsGone } from "./owners.js"

const fromSql = (what: string) => (error: SqlError): RecorderError =>
  new RecorderError({
    reason: "Database",
    message: `${what}: ${String((error.cause as { message?: unknown } | undefined)?.message ?? error.message)}`,
    cause: error
  })

interface RunRow {
  readonly run_id: RunId
  readonly status: RunStatus
  readonly status_reason: string | null
  readonly error_message: string | null
  readonly started_at: string
  readonly settings_json: string
  readonly source_schema_json: string | null
  readonly owner_pid: number | null
  readonly owner_host: string | null
}

export const makeResumeStore = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  const attempts = (runId: RunId) =>
    sql<RunAttemptView>`SELECT attempt, kind, status, reason, started_at, ended_at, owner_pid, owner_host, from_checkpoint
                        FROM run_attempts WHERE run_id = ${runId} ORDER BY attempt`.pipe(
      Effect.mapError(fromSql(`reading the attempts of run ${runId}`))
    )

  const liveOwner = (run: Pick<RunRow, "status" | "owner_pid" | "owner_host">) =>
    run.status === "running" && run.owner_pid !== null && run.owner_host !== null &&
      !ownerIsGone(run.owner_pid, run.owner_host)
      ? { pid: run.owner_pid, host: run.owner_host }
      : null

  const candidate = (runId: RunId) =>
    Effect.gen(function*() {
      const runs = yield* sql<RunRow>`SELECT run_id, status, status_reason, error_message, started_at, settings_json,
                                            source_schema_json, owner_pid, owner_host
                                     FROM runs WHERE run_id = ${runId}`
      const run = runs[0]
      if (run === undefined) {
        return yield* Effect.fail(new RecorderError({ reason: "MissingRun", message: `no run with id ${runId} in this Landscape` }))
      }
      const nodes = yield* sql<{ node_id: string; name: string; node_type: string; config_hash: string }>`
        SELECT node_id, name, node_type, config_hash FROM nodes WHERE run_id = ${runId} ORDER BY sequence`
      const edges = yield* sql<{ edge_id: string; from_node_id: string; label: string }>`
        SELECT edge_id, from_node_id, label FROM edges WHERE run_id = ${runId}`
      const checkpoints = yield* sql<CheckpointView>`
        SELECT sequence_number, attempt, created_at, topology_hash, state_json FROM checkpoints
        WHERE run_id = ${runId} ORDER BY sequence_number DESC LIMIT 1`
      const rows = yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM rows WHERE run_id = ${runId}`
      return {
        run_id: run.run_id,
        status: run.status,
        status_reason: run.status_reason,
        error_message: run.error_message,
        started_at: run.started_at,
        settings_json: run.settings_json,
        source_schema_json: run.source_schema_json,
        live_owner: liveOwner(run),
        nodes,
        edges,
        checkpoint: checkpoints[0] ?? null,
        attempts: yield* attempts(runId),
        rows_recorded: rows[0]?.n ?? 0
      } satisfies ResumeCandidate
    }).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(fromSql(`reading run ${runId}`)(e))))

  const beginAttempt = (runId: RunId, fromCheckpoint: number) =>
    sql.withTransaction(Effect.gen(function*() {
      const runs = yield* sql<RunRow>`SELECT run_id, status, owner_pid, owner_host FROM runs WHERE run_id = ${runId}`
      const run = runs[0]
      if (run === undefined) {
        return yield* Effect.fail(new RecorderError({ reason: "MissingRun", message: `no run with id ${runId} in this Landscape` }))
      }
      const owner = liveOwner(run)
      if (owner !== null) {
        return yield* Effect.fail(
          new RecorderError({ reason: "RunNotRunning", message: `run ${runId} is owned by a live process (pid ${owner.pid} on ${owner.host})` })
        )
      }
      const last = yield* sql<{ n: number | null }>`SELECT MAX(attempt) AS n FROM run_attempts WHERE run_id = ${runId}`
      const attempt = (last[0]?.n ?? 0) + 1
      const at = new Date().toISOString()
      yield* sql`INSERT INTO run_attempts ${
        sql.insert({
          run_id: runId,
          attempt,
          kind: "resumed",
          status: "running",
          reason: null,
          started_at: at,
          ended_at: null,
          owner_pid: process.pid,
          owner_host: hostname(),
          from_checkpoint: fromCheckpoint
        })
      }`
      yield* sql`UPDATE runs SET status = 'running', status_reason = NULL, completed_at = NULL, error_message = NULL,
                   result_json = NULL, owner_pid = ${process.pid}, owner_host = ${hostname()}
                 WHERE run_id = ${runId}`
      return attempt
    })).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(fromSql(`opening a new attempt of run ${runId}`)(e))))

  const closeAbandonedTokens = (runId: RunId, keep: ReadonlySet<string>, context: Readonly<Record<string, unknown>>) =>
    sql.withTransaction(Effect.gen(function*() {
      const open = yield* sql<{ token_id: string }>`
        SELECT t.token_id FROM tokens t
        WHERE t.run_id = ${runId}
          AND NOT EXISTS (SELECT 1 FROM token_outcomes o WHERE o.token_id = t.token_id AND o.is_terminal = 1)`
      const at = new Date().toISOString()
      const contextJson = canonicalJsonUnsafe(context)
      const errorHash = sha256Hex(contextJson)
      let closed = 0
      for (const { token_id } of open) {
        if (keep.has(token_id)) continue
        yield* sql`INSERT INTO token_outcomes ${
          sql.insert({
            outcome_id: newOutcomeId(),
            run_id: runId,
            token_id,
            outcome: "FAILED",
            is_terminal: 1,
            sink_name: null,
            batch_id: null,
            fork_group_id: null,
            join_group_id: null,
            expand_group_id: null,
            error_hash: errorHash,
            context_json: contextJson,
            recorded_at: at
          })
        }`
        closed++
      }
      return closed
    })).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(fromSql(`closing the open tokens of run ${runId}`)(e))))

  const failExecutingBatches = (runId: RunId, reason: string) =>
    sql.withTransaction(Effect.gen(function*() {
      const rows = yield* sql<{ batch_id: string }>`SELECT batch_id FROM batches WHERE run_id = ${runId} AND status = 'executing'`
      if (rows.length > 0) {
        yield* sql`UPDATE batches SET status = 'failed', completed_at = ${new Date().toISOString()},
                     error_json = ${canonicalJsonUnsafe({ reason })}
                   WHERE run_id = ${runId} AND status = 'executing'`
      }
      return rows.map((r) => r.batch_id)
    })).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(fromSql(`failing the executing batches of run ${runId}`)(e))))

  return ResumeStore.of({ candidate, beginAttempt, closeAbandonedTokens, failExecutingBatches, attempts })
})

/** The ResumeStore over whatever `SqlClient` is provided (migrations applied). */
export const ResumeStoreSql: Layer.Layer<ResumeStore, never, SqlClient.SqlClient> = Layer.effect(ResumeStore, makeResumeStore)
