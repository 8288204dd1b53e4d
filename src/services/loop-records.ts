/**
 * What an issue loop writes to the Landscape (loop_runs, loop_issues, stage_results,
 * command_results) and what it reads back. Plain shapes, so that the loop engine and
 * the adapter that stores them agree without depending on each other.
 */

export type LoopRunStatus = "running" | "completed" | "failed" | "interrupted"

/** How an issue ended; while it runs the row reads `pending`, then `running`. */
export type LoopIssueStatus = "success" | "failed" | "interrupted" | "skipped"

export interface IssueCounts {
  readonly total: number
  readonly success: number
  readonly failed: number
  readonly interrupted: number
  readonly skipped: number
}

/** A run as it begins: the run row and one `pending` row per issue. */
export interface LoopRunStart {
  readonly runId: string
  readonly startedAt: string
  readonly configFile: string
  readonly configJson: string
  readonly repo: string
  readonly runDir: string
  readonly maxAgents: number
  readonly issues: ReadonlyArray<{ readonly id: string; readonly title: string; readonly priority: number | null }>
}

export interface LoopIssueStart {
  readonly branch: string
  readonly worktree: string
  readonly baseSha: string
  readonly startedAt: string
}

export interface LoopIssueFinish {
  readonly status: LoopIssueStatus
  readonly reason: string | null
  readonly headSha: string | null
  readonly gateAttempts: number
  readonly reviewRounds: number
  /** The issue's full report, stored as JSON. */
  readonly result: unknown
  readonly completedAt: string
}

export interface LoopStageStart {
  readonly runId: string
  /** null for the run's own stage (run_end). */
  readonly issueId: string | null
  readonly stage: string
  readonly attempt: number
  readonly startedAt: string
}

export interface LoopStageFinish {
  readonly status: string
  readonly reason: string | null
  readonly completedAt: string
  /** The stage's result, stored as JSON. */
  readonly result: unknown
}

/** The recorded fields of one finished command. */
export interface LoopCommandOutcome {
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

export interface LoopCommandRecord {
  /** The stage the command ran in; null when it ran outside a recorded stage. */
  readonly stageId: string | null
  readonly runId: string
  readonly issueId: string | null
  readonly stage: string
  readonly result: LoopCommandOutcome
}

export interface LoopRunFinish {
  readonly status: LoopRunStatus
  readonly reason: string | null
  readonly completedAt: string
  readonly counts: IssueCounts
  readonly runEnd: { readonly status: string; readonly reason: string | null } | null
}

/** A loop run as `runledger runs` lists it. */
export interface LoopRunSummary {
  readonly run_id: string
  readonly kind: "loop"
  readonly status: LoopRunStatus
  readonly reason: string | null
  readonly started_at: string
  readonly completed_at: string | null
  readonly counts: IssueCounts
}

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

/** Where a run integrates its issues (`strategy: none`: no branch). */
export interface LoopIntegrationInfo {
  readonly strategy: string
  readonly branch: string | null
  /** The repository HEAD the run started from. */
  readonly baseSha: string
  readonly head: string | null
}

/** One issue of a recorded run, as a resume reads it back. */
export interface LoopIssueRecord {
  readonly issue_id: string
  readonly title: string
  readonly status: "pending" | "running" | LoopIssueStatus
  readonly reason: string | null
  readonly branch: string | null
  readonly worktree: string | null
  readonly base_sha: string | null
  readonly head_sha: string | null
  readonly integration_sha: string | null
  /** The stored report (`result_json`), null while the issue has none. */
  readonly result: unknown
}

/** A recorded loop run with its issues, as a resume reads it back. */
export interface LoopRunRecord {
  readonly run_id: string
  readonly status: LoopRunStatus
  readonly reason: string | null
  readonly config_file: string
  readonly repo: string
  readonly run_dir: string
  readonly base_sha: string | null
  readonly integration_strategy: string | null
  readonly integration_branch: string | null
  readonly integration_head: string | null
  /** 1 for a run never resumed; +1 per resume. */
  readonly attempts: number
  readonly owner_pid: number
  readonly owner_host: string
  readonly issues: ReadonlyArray<LoopIssueRecord>
}

export interface LoopRunResume {
  readonly resumedAt: string
  /** The issues worked again: back to `pending`. */
  readonly rerun: ReadonlyArray<string>
}
