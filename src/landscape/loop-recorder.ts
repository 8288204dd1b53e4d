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
import type {
  IssueCounts,
  LoopIssueRecord,
  LoopRunRecord,
  LoopRunStatus,
  LoopRunSummary,
  LoopStageSummary
} from "../services/loop-records.js"
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
    addIssues: (runId, issues) =>
      sql.withTransaction(Effect.gen(function*() {
        for (let i = 0; i < issues.length; i += ISSUE_CHUNK) {
          const rows = issues.slice(i, i + ISSUE_CHUNK).map((issue) => ({
            run_id: runId,
            issue_id: issue.id,
            title: issue.title,
            priority: issue.priority,
            status: "pending"
          }))
          yield* sql`INSERT INTO loop_issues ${sql.insert(rows)}`
        }
        yield* sql`UPDATE loop_runs SET total_count = total_count + ${issues.length} WHERE run_id = ${runId}`
      })).pipe(wrap("addIssues")),
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
    setIntegration: (runId, info) =>
      sql`UPDATE loop_runs SET base_sha = ${info.baseSha}, integration_strategy = ${info.strategy},
          integration_branch = ${info.branch}, integration_head = ${info.head}
          WHERE run_id = ${runId}`.pipe(Effect.asVoid, wrap("setIntegration")),
    recordIntegration: (runId, issueId, head) =>
      sql.withTransaction(Effect.gen(function*() {
        yield* sql`UPDATE loop_runs SET integration_head = ${head} WHERE run_id = ${runId}`
        if (issueId !== null) {
          yield* sql`UPDATE loop_issues SET integration_sha = ${head} WHERE run_id = ${runId} AND issue_id = ${issueId}`
        }
      })).pipe(wrap("recordIntegration")),
    loadRun: (runId) =>
      Effect.gen(function*() {
        const runs = yield* sql<Omit<LoopRunRecord, "issues">>`SELECT run_id, status, reason, config_file, repo, run_dir,
          base_sha, integration_strategy, integration_branch, integration_head, attempts, owner_pid, owner_host
          FROM loop_runs WHERE run_id = ${runId}`
        const run = runs[0]
        if (run === undefined) return undefined
        const issues = yield* sql<Omit<LoopIssueRecord, "result"> & { result_json: string | null }>`SELECT issue_id,
          title, status, reason, branch, worktree, base_sha, head_sha, integration_sha, result_json
          FROM loop_issues WHERE run_id = ${runId} ORDER BY rowid`
        const record: LoopRunRecord = {
          ...run,
          issues: issues.map(({ result_json, ...issue }) => ({
            ...issue,
            result: result_json === null ? null : JSON.parse(result_json) as unknown
          }))
        }
        return record
      }).pipe(wrap("loadRun"), Effect.withSpan("LoopRecorder.loadRun")),
    resumeRun: (runId, info) =>
      sql.withTransaction(Effect.gen(function*() {
        const taken = yield* sql<{ attempts: number }>`UPDATE loop_runs SET status = 'running', reason = NULL,
          completed_at = NULL, run_end_status = NULL, run_end_reason = NULL, owner_pid = ${process.pid},
          owner_host = ${NodeOs.hostname()}, attempts = attempts + 1, resumed_at = ${info.resumedAt}
          WHERE run_id = ${runId} AND status != 'running' RETURNING attempts`
        if (taken[0] === undefined) {
          return yield* Effect.fail(
            new LoopRecordError({ operation: "resumeRun", message: `loop run ${runId} is running or does not exist` })
          )
        }
        for (const issueId of info.rerun) {
          yield* sql`UPDATE loop_issues SET status = 'pending', reason = NULL, completed_at = NULL
            WHERE run_id = ${runId} AND issue_id = ${issueId}`
        }
        return taken[0].attempts
      })).pipe(
        Effect.catchTag("SqlError", (e) =>
          Effect.fail(new LoopRecordError({ operation: "resumeRun", message: e.message, cause: e }))
        )
      ),
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

// ---------------------------------------------------------------------------
// Reads for `runledger loop status` and `runledger loop logs`

/** A loop run's row, with the crash of its owner already applied. */
export interface LoopRunRow {
  readonly run_id: string
  readonly status: LoopRunStatus
  readonly reason: string | null
  readonly started_at: string
  readonly completed_at: string | null
  readonly config_file: string
  readonly repo: string
  readonly run_dir: string
  readonly max_agents: number
  readonly run_end_status: string | null
  readonly run_end_reason: string | null
  readonly counts: IssueCounts
}

/**
 * An issue's row: the known columns, plus whatever else `loop_issues` holds (later
 * columns such as an integration result appear without a change here).
 */
export type LoopIssueRow = {
  readonly issue_id: string
  readonly title: string
  readonly status: string
  readonly reason: string | null
  readonly branch: string | null
  readonly base_sha: string | null
  readonly head_sha: string | null
  readonly gate_attempts: number
  readonly review_rounds: number
  readonly started_at: string | null
  readonly completed_at: string | null
} & Readonly<Record<string, unknown>>

export interface LoopCommandRow {
  readonly stage_id: string | null
  readonly issue_id: string | null
  readonly stage: string
  /** The attempt of the stage row the command ran in (null outside a recorded stage). */
  readonly attempt: number | null
  readonly ref: string
  readonly command: string
  readonly passed: boolean
  readonly exit_code: number | null
  readonly timed_out: boolean
  readonly duration_ms: number
  readonly output_tail: string
  readonly log_file: string | null
  readonly started_at: string
  readonly finished_at: string
}

interface FullRunRow extends RunRow {
  readonly config_file: string
  readonly repo: string
  readonly run_dir: string
  readonly max_agents: number
  readonly run_end_status: string | null
  readonly run_end_reason: string | null
}

const readWrap = (operation: string) => <A, R>(effect: Effect.Effect<A, SqlError, R>) =>
  Effect.mapError(effect, (e) => new LoopRecordError({ operation, message: e.message, cause: e }))

/** The loop run `runId`, or the newest one for `latest`; undefined when there is none. */
export const readLoopRun = (runId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = runId === "latest"
      ? yield* sql<FullRunRow>`SELECT * FROM loop_runs ORDER BY started_at DESC, rowid DESC LIMIT 1`
      : yield* sql<FullRunRow>`SELECT * FROM loop_runs WHERE run_id = ${runId}`
    const run = rows[0]
    if (run === undefined) return undefined
    const counts = yield* sql<{ status: string; n: number }>`SELECT status, COUNT(*) AS n FROM loop_issues
      WHERE run_id = ${run.run_id} GROUP BY status`
    const gone = crashed(run)
    const row: LoopRunRow = {
      run_id: run.run_id,
      status: gone ? "interrupted" : run.status,
      reason: gone ? "process_crash" : run.reason,
      started_at: run.started_at,
      completed_at: run.completed_at,
      config_file: run.config_file,
      repo: run.repo,
      run_dir: run.run_dir,
      max_agents: run.max_agents,
      run_end_status: run.run_end_status,
      run_end_reason: run.run_end_reason,
      counts: countsOf(counts)
    }
    return row
  }).pipe(readWrap("readLoopRun"), Effect.withSpan("LoopRecorder.readLoopRun"))

/** The ids of the recorded loop runs, newest first (for "did you mean" lists). */
export const readLoopRunIds = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ run_id: string }>`SELECT run_id FROM loop_runs ORDER BY started_at DESC, rowid DESC`
  return rows.map((r) => r.run_id)
}).pipe(readWrap("readLoopRunIds"))

/** The issues of a run in the order they were listed, every column but the stored report. */
export const readLoopIssues = (runId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<Record<string, unknown>>`SELECT * FROM loop_issues WHERE run_id = ${runId} ORDER BY rowid`
    return rows.map((row) => {
      const { result_json: _report, run_id: _run, ...rest } = row
      return rest as LoopIssueRow
    })
  }).pipe(readWrap("readLoopIssues"))

/** The commands of a run (of one issue, or of the run's own stages for `issueId` null), in the order they ran. */
export const readLoopCommands = (runId: string, issueId: string | null) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<Omit<LoopCommandRow, "passed" | "timed_out"> & { passed: number; timed_out: number }>`
      SELECT c.stage_id, c.issue_id, c.stage, s.attempt, c.ref, c.command, c.passed, c.exit_code, c.timed_out,
        c.duration_ms, c.output_tail, c.log_file, c.started_at, c.finished_at
      FROM command_results c LEFT JOIN stage_results s ON s.stage_id = c.stage_id
      WHERE c.run_id = ${runId} AND ${issueId === null ? sql`c.issue_id IS NULL` : sql`c.issue_id = ${issueId}`}
      ORDER BY c.started_at, c.rowid`
    return rows.map((r): LoopCommandRow => ({ ...r, passed: r.passed === 1, timed_out: r.timed_out === 1 }))
  }).pipe(readWrap("readLoopCommands"))
