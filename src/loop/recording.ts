import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Data, Effect, Layer } from "effect"
import * as NodeCrypto from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import type { CommandResult } from "./results.js"

/** A loop audit write failed. The trail is the record: this fails the run. */
export class LoopRecordError extends Data.TaggedError("LoopRecordError")<{
  readonly operation: string
  readonly message: string
  readonly cause?: unknown
}> {}

export interface IssueCounts {
  readonly total: number
  readonly success: number
  readonly failed: number
  readonly interrupted: number
  readonly skipped: number
}

export type LoopRunStatus = "running" | "completed" | "failed" | "interrupted"

export interface LoopRecorderService {
  readonly beginRun: (run: {
    readonly runId: string
    readonly startedAt: string
    readonly configFile: string
    readonly configJson: string
    readonly repo: string
    readonly runDir: string
    readonly maxAgents: number
    readonly issues: ReadonlyArray<{ readonly id: string; readonly title: string; readonly priority: number | null }>
  }) => Effect.Effect<void, LoopRecordError>
  readonly startIssue: (runId: string, issueId: string, info: {
    readonly branch: string
    readonly worktree: string
    readonly baseSha: string
    readonly startedAt: string
  }) => Effect.Effect<void, LoopRecordError>
  readonly finishIssue: (runId: string, issueId: string, info: {
    readonly status: "success" | "failed" | "interrupted" | "skipped"
    readonly reason: string | null
    readonly headSha: string | null
    readonly gateAttempts: number
    readonly reviewRounds: number
    readonly result: unknown
    readonly completedAt: string
  }) => Effect.Effect<void, LoopRecordError>
  /** Writes a `running` stage row and returns its id. */
  readonly startStage: (stage: {
    readonly runId: string
    readonly issueId: string | null
    readonly stage: string
    readonly attempt: number
    readonly startedAt: string
  }) => Effect.Effect<string, LoopRecordError>
  readonly finishStage: (stageId: string, info: {
    readonly status: string
    readonly reason: string | null
    readonly completedAt: string
    readonly result: unknown
  }) => Effect.Effect<void, LoopRecordError>
  readonly recordCommand: (info: {
    readonly stageId: string | null
    readonly runId: string
    readonly issueId: string | null
    readonly stage: string
    readonly result: CommandResult
  }) => Effect.Effect<void, LoopRecordError>
  readonly finishRun: (runId: string, info: {
    readonly status: LoopRunStatus
    readonly reason: string | null
    readonly completedAt: string
    readonly counts: IssueCounts
    readonly runEnd: { readonly status: string; readonly reason: string | null } | null
  }) => Effect.Effect<void, LoopRecordError>
}

export class LoopRecorder extends Context.Tag("runledger/LoopRecorder")<LoopRecorder, LoopRecorderService>() {}

const json = (value: unknown) => JSON.stringify(value ?? null)

/** The LoopRecorder over the Landscape's SqlClient: one short statement per event. */
export const makeLoopRecorder = Effect.gen(function*() {
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
        // Chunked so one statement stays well under SQLite's parameter limit.
        for (let i = 0; i < run.issues.length; i += 500) {
          const rows = run.issues.slice(i, i + 500).map((issue) => ({
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
          WHERE run_id = ${runId}`.pipe(Effect.asVoid, wrap("finishRun"))
  }
  return service
})

export const LoopRecorderSql: Layer.Layer<LoopRecorder, never, SqlClient.SqlClient> = Layer.effect(
  LoopRecorder,
  makeLoopRecorder
)

/** Whether the process that owns a run is gone. Only decidable on the same host. */
export const ownerIsGone = (pid: number, host: string): boolean => {
  if (host !== NodeOs.hostname()) return false
  if (pid === process.pid) return false
  try {
    process.kill(pid, 0)
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ESRCH"
  }
  // A zombie is gone too.
  try {
    const stat = NodeFs.readFileSync(`/proc/${pid}/stat`, "latin1")
    return stat.slice(stat.lastIndexOf(")") + 2)[0] === "Z"
  } catch {
    return false
  }
}

export interface LoopRunSummary {
  readonly run_id: string
  readonly kind: "loop"
  readonly status: LoopRunStatus
  readonly reason: string | null
  readonly started_at: string
  readonly completed_at: string | null
  readonly counts: IssueCounts
}

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

/**
 * Loop runs for `runledger runs`, newest first. A run still `running` whose owning
 * process is gone is reported `interrupted, reason=process_crash`.
 */
export const listLoopRuns = Effect.fn("loop.listLoopRuns")(function*() {
  const sql = yield* SqlClient.SqlClient
  const runs = yield* sql<RunRow>`SELECT run_id, status, reason, started_at, completed_at, owner_pid, owner_host
    FROM loop_runs ORDER BY started_at DESC, run_id DESC`
  const counts = yield* sql<{ run_id: string; status: string; n: number }>`SELECT run_id, status, COUNT(*) AS n
    FROM loop_issues GROUP BY run_id, status`
  return runs.map((run): LoopRunSummary => {
    const crashed = run.status === "running" && ownerIsGone(run.owner_pid, run.owner_host)
    return {
      run_id: run.run_id,
      kind: "loop",
      status: crashed ? "interrupted" : run.status,
      reason: crashed ? "process_crash" : run.reason,
      started_at: run.started_at,
      completed_at: run.completed_at,
      counts: countsOf(counts.filter((c) => c.run_id === run.run_id))
    }
  })
})

export interface LoopStageSummary {
  readonly stage_id: string
  readonly issue_id: string | null
  readonly stage: string
  readonly attempt: number
  readonly status: string
  readonly reason: string | null
  readonly started_at: string
  readonly completed_at: string | null
}

/** The stages of one loop run; stages left `running` by a crashed process read `interrupted, reason=process_crash`. */
export const listLoopStages = Effect.fn("loop.listLoopStages")(function*(runId: string) {
  const sql = yield* SqlClient.SqlClient
  const run = yield* sql<RunRow>`SELECT run_id, status, reason, started_at, completed_at, owner_pid, owner_host
    FROM loop_runs WHERE run_id = ${runId}`
  const crashed = run[0] !== undefined && run[0].status === "running" && ownerIsGone(run[0].owner_pid, run[0].owner_host)
  const stages = yield* sql<LoopStageSummary>`SELECT stage_id, issue_id, stage, attempt, status, reason, started_at,
    completed_at FROM stage_results WHERE run_id = ${runId} ORDER BY started_at, rowid`
  return stages.map((s): LoopStageSummary =>
    crashed && s.status === "running" ? { ...s, status: "interrupted", reason: "process_crash" } : s
  )
})
