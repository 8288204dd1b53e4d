import { Option } from "effect"
import type { IssueCounts, LoopRunStatus } from "../services/loop-records.js"
import type { Issue } from "./issues.js"
import type { IntegrationStrategy } from "./config.js"
import type { IntegrationOutcome } from "./integration.js"
import type { IssueStatus } from "./lifecycle.js"
import type { CommandResult, ReviewOutcome, RunEndResult, SessionEndResult } from "./results.js"

/** One issue's outcome, as returned, stored (`loop_issues.result_json`) and shown in `--json`. */
export interface IssueReport {
  readonly issue_id: string
  readonly title: string
  readonly status: IssueStatus
  readonly reason: string | null
  readonly branch: string | null
  readonly base_sha: string | null
  readonly head_sha: string | null
  readonly gate_attempts: number
  readonly review_rounds: number
  readonly session_end: SessionEndResult | null
  readonly review: ReviewOutcome | null
  /** The merge into the integration branch; absent (or null) when it did not run. */
  readonly integration?: IntegrationOutcome | null
}

/** Where the run's work was integrated. */
export interface RunIntegration {
  readonly strategy: IntegrationStrategy
  /** null with strategy `none`. */
  readonly branch: string | null
  /** The repository HEAD the run started from. */
  readonly base_sha: string
  /** The integration branch's final head (`none`: the repository's HEAD at run_end). */
  readonly head: string | null
}

/** An epic the run saw complete. */
export interface EpicReport {
  readonly epic_id: string
  readonly title: string
  /** `closed`; `validation_failed` (the trigger failed, the epic stays open); `close_failed` (bd close failed). */
  readonly status: "closed" | "validation_failed" | "close_failed"
  readonly reason: string | null
  readonly commands: ReadonlyArray<CommandResult>
}

export interface LoopRunResult {
  readonly run_id: string
  readonly status: LoopRunStatus
  readonly reason: string | null
  readonly run_dir: string
  readonly counts: IssueCounts
  readonly issues: ReadonlyArray<IssueReport>
  readonly run_end: RunEndResult
  readonly integration: RunIntegration
  /** 1 for a run started once; +1 for each resume. */
  readonly attempt: number
  /** Epics whose children this run saw closed (live beads; empty otherwise). */
  readonly epics: ReadonlyArray<EpicReport>
}

/** The report of an issue before (or without) any work on it: no worktree, no attempts. */
export const unstartedReport = (
  issue: Pick<Issue, "id" | "title">,
  status: IssueStatus,
  reason: string | null
): IssueReport => ({
  issue_id: issue.id,
  title: issue.title,
  status,
  reason,
  branch: null,
  base_sha: null,
  head_sha: null,
  gate_attempts: 0,
  review_rounds: 0,
  session_end: null,
  review: null
})

export const countsOf = (issues: ReadonlyArray<IssueReport>): IssueCounts => ({
  total: issues.length,
  success: issues.filter((i) => i.status === "success").length,
  failed: issues.filter((i) => i.status === "failed").length,
  interrupted: issues.filter((i) => i.status === "interrupted").length,
  skipped: issues.filter((i) => i.status === "skipped").length
})

/**
 * The run's status and reason: an abort decides first (Ctrl-C and a hard kill
 * interrupt, any other abort fails), then whether anything succeeded, then run_end.
 */
export const runOutcome = (
  aborted: Option.Option<string>,
  counts: IssueCounts,
  runEnd: RunEndResult
): readonly [LoopRunStatus, string | null] => {
  const abortReason = Option.getOrNull(aborted)
  return abortReason === "sigint" || abortReason === "killed"
    ? ["interrupted", abortReason]
    : abortReason !== null
    ? ["failed", abortReason]
    : counts.total === 0
    ? ["completed", "no_issues"]
    : counts.success === 0
    ? ["failed", "no_success"]
    : runEnd.status === "fail"
    ? ["failed", "run_end_failed"]
    : ["completed", null]
}
