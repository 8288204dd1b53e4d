import { Effect, Option } from "effect"
import * as NodePath from "node:path"
import type { IssueCounts } from "../services/loop-records.js"
import type { RunEnv } from "./issue-run.js"
import { nowIso, type StageContext } from "./results.js"
import { runReviewer } from "./review.js"
import { runRunEnd } from "./run-end.js"
import { createRunEndFolder } from "./run-folder.js"
import { writeDiff } from "./workspace.js"

/**
 * The run's own stage, after every issue: run_end in the repository over
 * `baseSha..HEAD`, recorded as one `stage_results` row. When it may run (configured,
 * run not aborted) the row is written `running` first, so that its commands attach to
 * it; otherwise the row is written once, at the end.
 */
export const runRunEndStage = (
  env: RunEnv,
  run: { readonly counts: IssueCounts; readonly aborted: Option.Option<string>; readonly baseSha: string }
) =>
  Effect.gen(function*() {
    const { abort, config, emit, recorder, runId } = env
    const { aborted, baseSha, counts } = run
    let logIndex = 0
    const logDir = yield* createRunEndFolder(env.runDir)
    let stageId: string | null = null
    const ctx: StageContext = {
      runId,
      issueId: null,
      cwd: config.repo,
      env: { RUN_ID: runId, BASE_SHA: baseSha, ISSUE_ID: "", ISSUE_DIR: logDir },
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
        const head = yield* writeDiff(config.repo, baseSha, diffFile).pipe(Effect.orElseSucceed(() => ""))
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
    return { runEnd, completedAt }
  })
