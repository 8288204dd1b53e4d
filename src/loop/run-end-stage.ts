import { Effect, Option } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import type { IssueCounts } from "../services/loop-records.js"
import type { Integration } from "./integration.js"
import type { RunEnv } from "./issue-run.js"
import { nowIso, type StageContext } from "./results.js"
import { runReviewer } from "./review.js"
import { runRunEnd } from "./run-end.js"
import { createRunEndFolder } from "./run-folder.js"
import { git, headSha, writeDiff } from "./workspace.js"

/**
 * The run's own stage, after every issue: run_end in the integration branch's worktree
 * (with `integration.strategy: none`, in the repository) over `baseSha..HEAD`, recorded as one `stage_results` row. When it may run (configured,
 * run not aborted) the row is written `running` first, so that its commands attach to
 * it; otherwise the row is written once, at the end.
 */
export const runRunEndStage = (
  env: RunEnv,
  run: {
    readonly counts: IssueCounts
    readonly aborted: Option.Option<string>
    readonly baseSha: string
    readonly integration: Integration | null
  }
) =>
  Effect.gen(function*() {
    const { abort, config, emit, recorder, runId } = env
    const { aborted, baseSha, counts, integration } = run
    const logDir = yield* createRunEndFolder(env.runDir)
    // A resumed run keeps the logs of an earlier attempt's run_end: number on from them.
    let logIndex = yield* Effect.sync(() => NodeFs.readdirSync(logDir).length)
    let stageId: string | null = null
    const cwd = integration?.worktree ?? config.repo
    const branch = integration?.branch ??
      (yield* git(config.repo, "rev-parse", "--abbrev-ref", "HEAD").pipe(Effect.orElseSucceed(() => "")))
    const ctx: StageContext = {
      runId,
      issueId: null,
      cwd,
      env: {
        RUN_ID: runId,
        BASE_SHA: baseSha,
        ISSUE_ID: "",
        ISSUE_DIR: logDir,
        RUNLEDGER_REPO: config.repo,
        RUNLEDGER_BRANCH: branch,
        RUNLEDGER_INTEGRATION_BRANCH: integration?.branch ?? ""
      },
      logDir,
      graceMs: config.killGraceMs,
      abort,
      emit,
      onCommand: (stage, result) =>
        recorder.recordCommand({ stageId, runId, issueId: null, stage, result }).pipe(Effect.orDie),
      nextLogIndex: () => ++logIndex
    }
    const startedAt = yield* nowIso
    if (config.runEnd !== undefined && Option.isNone(aborted)) {
      stageId = yield* recorder.startStage({ runId, issueId: null, stage: "run_end", attempt: 1, startedAt })
    }
    const diffFile = NodePath.join(logDir, "diff.patch")
    const runEnd = yield* runRunEnd({
      ctx,
      config: config.runEnd,
      successCount: counts.success,
      failureCount: counts.failed,
      totalCount: counts.total,
      aborted,
      fixerCommand: config.fixer?.command ?? "",
      codeReview: Effect.gen(function*() {
        const head = yield* writeDiff(cwd, baseSha, diffFile).pipe(Effect.orElseSucceed(() => ""))
        return yield* runReviewer(ctx, "run_end", config.reviewer!, {
          HEAD_SHA: head,
          DIFF_FILE: diffFile,
          REVIEW_RANGE: `${baseSha}..${head}`
        })
      })
    })
    const completedAt = yield* nowIso
    const finished = { status: runEnd.status, reason: runEnd.reason, completedAt, result: runEnd }
    if (stageId !== null) {
      yield* recorder.finishStage(stageId, finished)
    } else {
      const skippedId = yield* recorder.startStage({ runId, issueId: null, stage: "run_end", attempt: 1, startedAt: completedAt })
      yield* recorder.finishStage(skippedId, finished)
    }
    // run_end's fixer may have committed on the integration branch.
    const head = integration !== null
      ? yield* integration.refresh
      : yield* headSha(config.repo).pipe(Effect.orElseSucceed(() => null))
    if (integration !== null && head !== null) yield* recorder.recordIntegration(runId, null, head)
    return { runEnd, completedAt, head }
  })
