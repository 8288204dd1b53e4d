/**
 * `LoopRecorderSql`: the LoopRecorder port over the Landscape's `@effect/sql` client,
 * one short statement per event (a run's first rows in one transaction).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Layer } from "effect"
import * as NodeCrypto from "node:crypto"
import * as NodeOs from "node:os"
import { LoopRecorder, LoopRecordError, type LoopRecorderService } from "../services/loop-recorder.js"
import type { IssueCounts, LoopRunStatus, LoopRunSummary, LoopStageSummary } from "../services/loop-records.js"
import { ownerIsGone } from "./owners.js"

const json = (value: unknown) => JSON.stringify(value ?? null)

/** Issues per INSERT, so that one statement stays well under SQLite's parameter limit. */
const ISSUE_CHUNK = 500

interface RunRow {
  readonly run_id: string
  readonly status: LoopRunStatus
  readonly reason: string | null
  readonly started_at: string
  readonly completed_at: string | null
  readonly owner_pid: number
  readonly owner_host: string
}

const countsOf = (rows: ReadonlyArray<{ status: string; n: number }>): IssueCounts => {
  const get = (s: string) => rows.find((r) => r.status === s)?.n ?? 0
  return {
    total: rows.reduce((a, r) => a + r.n, 0),
    success: get("success"),
    failed: get("failed"),
    interrupted: get("interrupted"),
    skipped: get("skipped")
  }
}

const crashed = (run: RunRow | undefined) =>
  run !== undefined && run.status === "running" && ownerIsGone(run.owner_pid, run.owner_host)

export const makeLoopRecorderSql: Effect.Effect<LoopRecorderService, never, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const wrap = (operation: string) => <A>(effect: Effect.Effect<A, SqlError>) =>
    Effect.mapError(effect, (e) => new LoopRecordError({ operation, message: e.message, cause: e }))

  const service: LoopRecorderService = {
    beginRun: (run) =>
      sql.withTransaction(Effect.gen(function*() {
        yield* sql`INSERT INTO loop_runs ${
          sql.insert({
            run_id: run.runId,
            status: "running",
            started_at: run.startedAt,
            config_file: run.configFile,
            config_json: run.configJson,
            repo: run.repo,
            run_dir: run.runDir,
            max_agents: run.maxAgents,
            owner_pid: process.pid,
            owner_host: NodeOs.hostname(),
            total_count: run.issues.length
          })
        }`
        for (let i = 0; i < run.issues.length; i += ISSUE_CHUNK) {
          const rows = run.issues.slice(i, i + ISSUE_CHUNK).map((issue) => ({
            run_id: run.runId,
            issue_id: issue.id,
            title: issue.title,
            priority: issue.priority,
            status: "pending"
          }))
          yield* sql`INSERT INTO loop_issues ${sql.insert(rows)}`
        }
      })).pipe(wrap("beginRun")),
    startIssue: (runId, issueId, info) =>
      sql`UPDATE loop_issues SET status = 'running', branch = ${info.branch}, worktree = ${info.worktree},
          base_sha = ${info.baseSha}, started_at = ${info.startedAt}
          WHERE run_id = ${runId} AND issue_id = ${issueId}`.pipe(Effect.asVoid, wrap("startIssue")),
    finishIssue: (runId, issueId, info) =>
      sql`UPDATE loop_issues SET status = ${info.status}, reason = ${info.reason}, head_sha = ${info.headSha},
          gate_attempts = ${info.gateAttempts}, review_rounds = ${info.reviewRounds},
          result_json = ${json(info.result)}, completed_at = ${info.completedAt}
          WHERE run_id = ${runId} AND issue_id = ${issueId}`.pipe(Effect.asVoid, wrap("finishIssue")),
    startStage: (stage) => {
      const stageId = NodeCrypto.randomUUID()
      return sql`INSERT INTO stage_results ${
        sql.insert({
          stage_id: stageId,
          run_id: stage.runId,
          issue_id: stage.issueId,
          stage: stage.stage,
          attempt: stage.attempt,
          status: "running",
          started_at: stage.startedAt
        })
      }`.pipe(Effect.as(stageId), wrap("startStage"))
    },
    finishStage: (stageId, info) =>
      sql`UPDATE stage_results SET status = ${info.status}, reason = ${info.reason},
          completed_at = ${info.completedAt}, result_json = ${json(info.result)}
          WHERE stage_id = ${stageId}`.pipe(Effect.asVoid, wrap("finishStage")),
    recordCommand: ({ issueId, result, runId, stage, stageId }) =>
      sql`INSERT INTO command_results ${
        sql.insert({
          command_id: NodeCrypto.randomUUID(),
          stage_id: stageId,
          run_id: runId,
          issue_id: issueId,
          stage,
          ref: result.ref,
          command: result.command,
          passed: result.passed ? 1 : 0,
          exit_code: result.exit_code,
          timed_out: result.timed_out ? 1 : 0,
          duration_ms: result.duration_ms,
          output_tail: result.output_tail,
          log_file: result.log_file,
          started_at: result.started_at,
          finished_at: result.finished_at
        })
      }`.pipe(Effect.asVoid, wrap("recordCommand")),
    finishRun: (runId, info) =>
      sql`UPDATE loop_runs SET status = ${info.status}, reason = ${info.reason}, completed_at = ${info.completedAt},
          total_count = ${info.counts.total}, success_count = ${info.counts.success},
          failed_count = ${info.counts.failed}, interrupted_count = ${info.counts.interrupted},
          skipped_count = ${info.counts.skipped},
          run_end_status = ${info.runEnd?.status ?? null}, run_end_reason = ${info.runEnd?.reason ?? null}
          WHERE run_id = ${runId}`.pipe(Effect.asVoid, wrap("finishRun")),
    startProcess: (p) =>
      sql`INSERT INTO loop_processes ${
        sql.insert({
          process_id: p.processId,
          run_id: p.runId,
          issue_id: p.issueId,
          stage: p.stage,
          ref: p.ref,
          command: p.command,
          log_file: p.logFile,
          pgid: p.pgid,
          status: "running",
          started_at: p.startedAt
        })
      }`.pipe(Effect.asVoid, wrap("startProcess")),
    endProcess: (processId, endedAt) =>
      sql`UPDATE loop_processes SET status = 'ended', ended_at = ${endedAt}
          WHERE process_id = ${processId} AND status = 'running'`.pipe(Effect.asVoid, wrap("endProcess")),
    listRuns: Effect.gen(function*() {
      const runs = yield* sql<RunRow>`SELECT run_id, status, reason, started_at, completed_at, owner_pid, owner_host
        FROM loop_runs ORDER BY started_at DESC, run_id DESC`
      const counts = yield* sql<{ run_id: string; status: string; n: number }>`SELECT run_id, status, COUNT(*) AS n
        FROM loop_issues GROUP BY run_id, status`
      return runs.map((run): LoopRunSummary => {
        const gone = crashed(run)
        return {
          run_id: run.run_id,
          kind: "loop",
          status: gone ? "interrupted" : run.status,
          reason: gone ? "process_crash" : run.reason,
          started_at: run.started_at,
          completed_at: run.completed_at,
          counts: countsOf(counts.filter((c) => c.run_id === run.run_id))
        }
      })
    }).pipe(wrap("listRuns"), Effect.withSpan("LoopRecorder.listRuns")),
    listStages: (runId) =>
      Effect.gen(function*() {
        const run = yield* sql<RunRow>`SELECT run_id, status, reason, started_at, completed_at, owner_pid, owner_host
          FROM loop_runs WHERE run_id = ${runId}`
        const gone = crashed(run[0])
        const stages = yield* sql<LoopStageSummary>`SELECT stage_id, issue_id, stage, attempt, status, reason, started_at,
          completed_at FROM stage_results WHERE run_id = ${runId} ORDER BY started_at, rowid`
        return stages.map((s): LoopStageSummary =>
          gone && s.status === "running" ? { ...s, status: "interrupted", reason: "process_crash" } : s
        )
      }).pipe(wrap("listStages"), Effect.withSpan("LoopRecorder.listStages"))
  }
  return service
})

/** The LoopRecorder over the Landscape's SqlClient (provide `LandscapeSql(url)` under it). */
export const LoopRecorderSql: Layer.Layer<LoopRecorder, never, SqlClient.SqlClient> = Layer.effect(
  LoopRecorder,
  makeLoopRecorderSql
)
