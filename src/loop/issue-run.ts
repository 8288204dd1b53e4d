import { Effect, Exit, Option, type Types } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import type { LoopRecorderService } from "../services/loop-recorder.js"
import type { RunAbortService } from "./abort.js"
import type { LoopConfig } from "./config.js"
import { checkProgress, type FailedGate, type GateProgress, runGate } from "./gate.js"
import { type Integration, integrationFailureReason, runIntegrationStage } from "./integration.js"
import type { Issue } from "./issues.js"
import { boundsFrom, type Event, initial, isTerminal, type IssueStatus, type Step, transition } from "./lifecycle.js"
import { type IssueReport, unstartedReport } from "./report.js"
import { nowIso, runCommand, type SessionEndResult, type StageContext } from "./results.js"
import { findingsText, runReviewer } from "./review.js"
import { createIssueFolder, readResolution, removeFile, writeFile, writeIssueFile } from "./run-folder.js"
import { runSessionEnd, skippedSessionEnd } from "./session-end.js"
import { makeStageTrail } from "./stage-trail.js"
import { acquireWorkspace, headSha, writeDiff } from "./workspace.js"

/** What every issue of a run shares. */
export interface RunEnv {
  readonly config: LoopConfig
  readonly runId: string
  readonly runDir: string
  readonly recorder: LoopRecorderService
  readonly abort: RunAbortService
  readonly emit: (line: string) => Effect.Effect<void>
  /** Serialises git's worktree bookkeeping across issues. */
  readonly gitLock: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** The run's integration branch; null with `integration.strategy: none`. */
  readonly integration: Integration | null
  /** The run's attempt: 1, then +1 per resume. */
  readonly attempt: number
}

/** Records an issue that never ran because a dependency did not succeed. */
export const skipBlockedIssue = (env: RunEnv, issue: Issue, blocked: ReadonlyArray<string>) =>
  skipIssue(env, issue, `dependency_failed:${blocked.join(",")}`)

/** Records an issue that never ran: `skipped` with the reason (a failed dependency, a hard kill). */
export const skipIssue = (env: RunEnv, issue: Issue, reason: string) =>
  Effect.gen(function*() {
    const report = unstartedReport(issue, "skipped", reason)
    yield* env.recorder.finishIssue(env.runId, issue.id, {
      status: report.status,
      reason: report.reason,
      headSha: null,
      gateAttempts: 0,
      reviewRounds: 0,
      result: report,
      completedAt: yield* nowIso
    })
    return report
  })

/**
 * Drives one issue through the lifecycle machine in its own worktree, performing each
 * action the machine asks for and feeding the outcome back as an event.
 */
export const runIssue = (env: RunEnv, issue: Issue) =>
  Effect.gen(function*() {
    const { abort, config, emit, recorder, runId } = env
    const bounds = boundsFrom(config)
    const report: Types.Mutable<IssueReport> = unstartedReport(issue, "skipped", null)
    let recorded = false
    const finishRecord = (status: IssueStatus, reason: string | null) =>
      Effect.gen(function*() {
        report.status = status
        report.reason = reason
        yield* recorder.finishIssue(runId, issue.id, {
          status,
          reason,
          headSha: report.head_sha,
          gateAttempts: report.gate_attempts,
          reviewRounds: report.review_rounds,
          result: report,
          completedAt: yield* nowIso
        })
        recorded = true
        yield* emit(`[issue] finished: issue_id=${issue.id}, status=${status}${reason === null ? "" : `, reason=${reason}`}`)
      })

    // If the whole run is killed (second SIGINT), the issue still ends on the record,
    // wherever it was (even creating its worktree).
    yield* Effect.addFinalizer((exit) =>
      Exit.isInterrupted(exit) && !recorded ? finishRecord("interrupted", "killed").pipe(Effect.ignore) : Effect.void
    )

    // Pending issues never start once the run is aborted.
    const pendingAbort = yield* abort.reason
    if (Option.isSome(pendingAbort)) {
      yield* finishRecord("skipped", pendingAbort.value)
      return report as IssueReport
    }

    const files = yield* createIssueFolder(env.runDir, issue.id)
    const ws = yield* acquireWorkspace({
      repo: config.repo,
      root: NodePath.join(config.workdir, "worktrees", runId),
      runId,
      issueId: issue.id,
      keep: config.keepWorktrees,
      lock: env.gitLock,
      attempt: env.attempt,
      ...(env.integration === null ? {} : { base: env.integration.head })
    })
    report.branch = ws.branch
    report.base_sha = ws.baseSha
    yield* recorder.startIssue(runId, issue.id, {
      branch: ws.branch,
      worktree: ws.path,
      baseSha: ws.baseSha,
      startedAt: yield* nowIso
    })
    yield* emit(`[issue] started: issue_id=${issue.id}, base_sha=${ws.baseSha}`)

    yield* writeIssueFile(files, issue)
    const stages = makeStageTrail(recorder, runId, issue.id)
    // A resumed issue keeps the logs of its interrupted attempt: number on from them.
    let logIndex = yield* Effect.sync(() => NodeFs.readdirSync(files.logDir).length)
    const ctx: StageContext = {
      runId,
      issueId: issue.id,
      cwd: ws.path,
      env: {
        RUN_ID: runId,
        ISSUE_ID: issue.id,
        ISSUE_FILE: files.issue,
        RESULT_FILE: files.result,
        BASE_SHA: ws.baseSha,
        ISSUE_DIR: files.dir,
        RUNLEDGER_REPO: config.repo,
        RUNLEDGER_BRANCH: ws.branch,
        RUNLEDGER_INTEGRATION_BRANCH: env.integration?.branch ?? ""
      },
      logDir: files.logDir,
      graceMs: config.killGraceMs,
      abort,
      emit,
      onCommand: (stage, result) =>
        recorder.recordCommand({ stageId: stages.current(), runId, issueId: issue.id, stage, result }).pipe(Effect.orDie),
      nextLogIndex: () => ++logIndex
    }
    const skipSessionEnd = (reason: string) =>
      Effect.gen(function*() {
        report.session_end = skippedSessionEnd(reason)
        yield* emit(`[trigger] session_end skipped: issue_id=${issue.id}, reason=${reason}`)
        yield* stages.skipped("session_end", reason, report.session_end)
      })

    /**
     * The reviewer over `base_sha..HEAD`, in the review stage or in session_end's code
     * review. Its `$SESSION_END_RESULT_FILE` is written just before, from this round's
     * session_end (in session_end itself: its result so far), so it is never stale.
     */
    const codeReview = (reviewStage: string, evidence: SessionEndResult | null, round: number) =>
      Effect.gen(function*() {
        const reviewer = config.reviewer!
        yield* writeFile(files.sessionEnd, JSON.stringify(evidence, null, 2))
        const head = yield* writeDiff(ws.path, ws.baseSha, files.diff).pipe(Effect.orElseSucceed(() => ""))
        return yield* runReviewer(ctx, reviewStage, reviewer, {
          HEAD_SHA: head,
          DIFF_FILE: files.diff,
          REVIEW_RANGE: `${ws.baseSha}..${head}`,
          SESSION_END_RESULT_FILE: files.sessionEnd,
          ATTEMPT: String(round),
          MAX_ATTEMPTS: String(bounds.maxReviewRounds)
        })
      })

    let feedback: string | null = null
    let previousGate: FailedGate | null = null
    let step: Step = transition(bounds, initial, { _tag: "Start" })

    while (!isTerminal(step.state)) {
      const action = step.action
      // A draining run still reviews an issue that was in session_end (R10), unless it is being killed.
      const drainReview = action._tag === "RunReviewer" && action.drain && !(yield* abort.hardKill)
      if (action._tag !== "RunFinalize" && action._tag !== "None" && !drainReview) {
        const aborted = yield* abort.reason
        if (Option.isSome(aborted)) {
          step = transition(bounds, step.state, { _tag: "Aborted", reason: aborted.value })
          continue
        }
      }
      let event: Event
      switch (action._tag) {
        case "RunImplementer": {
          report.gate_attempts++
          const attempt = report.gate_attempts
          yield* removeFile(files.result)
          const implEnv: Record<string, string> = {
            ATTEMPT: String(action.attempt),
            MAX_ATTEMPTS: String(bounds.maxGateAttempts)
          }
          if (feedback !== null) {
            yield* writeFile(files.feedback, feedback)
            implEnv["FEEDBACK_FILE"] = files.feedback
          }
          yield* stages.run(
            "implementer",
            attempt,
            runCommand(ctx, "implementer", {
              ref: "implementer",
              command: config.implementer.command,
              timeoutMs: config.implementer.timeoutMs,
              env: implEnv
            }),
            (r) => ({ status: r.passed ? "pass" : "fail", reason: r.timed_out ? "timeout" : null, result: r })
          )
          event = { _tag: "ImplementerDone", resolution: yield* readResolution(files.result) }
          break
        }
        case "RunGate": {
          const gate = yield* stages.run(
            "gate",
            report.gate_attempts,
            runGate(ctx, config, ws, { attempt: action.attempt, maxAttempts: bounds.maxGateAttempts }),
            (g) => ({ status: g.passed ? "pass" : "fail", reason: g.passed ? null : "gate_failed", result: g.results })
          )
          let noProgress = false
          if (!gate.passed) {
            const progress: GateProgress = yield* checkProgress(ws.path, gate.failure, previousGate)
            noProgress = progress.noProgress
            previousGate = progress.current
            feedback = `# Gate failed (attempt ${action.attempt} of ${bounds.maxGateAttempts})\n\n${gate.failure}`
          }
          event = { _tag: "GateResult", passed: gate.passed, noProgress }
          break
        }
        case "SkipSessionEnd": {
          yield* skipSessionEnd(action.reason)
          event = { _tag: "SessionEndSkipped" }
          break
        }
        case "RunSessionEndValidation": {
          const result = yield* stages.run(
            "session_end",
            action.round,
            runSessionEnd({
              ctx,
              config: config.sessionEnd!,
              bounds,
              round: action.round,
              codeReview: (evidence) => codeReview("session_end", evidence, action.round),
              fixerCommand: config.fixer?.command ?? ""
            }),
            (r) => ({ status: r.status, reason: r.reason, result: r })
          )
          report.session_end = result
          const drain = yield* abort.reason
          event = {
            _tag: "SessionEndFinished",
            status: result.status,
            abortRun: (result.status === "fail" || result.status === "timeout") &&
              config.sessionEnd!.failureMode === "abort",
            ...(Option.isSome(drain) ? { drain: drain.value } : {})
          }
          break
        }
        case "RunReviewer": {
          report.review_rounds = action.round
          const outcome = yield* stages.run(
            "review",
            action.round,
            codeReview("review", report.session_end, action.round),
            (r) => ({
              status: r.status,
              reason: r.status === "parse_error" ? r.error : null,
              result: { ...r, command: null }
            })
          )
          report.review = outcome
          if (outcome.status === "blocked") {
            feedback = `# Review blocked (round ${action.round})\n\n${findingsText(outcome.blocking)}\n`
          }
          event = action.drain && (yield* abort.hardKill)
            ? { _tag: "Aborted", reason: "killed" }
            : { _tag: "ReviewResult", outcome: outcome.status }
          break
        }
        case "RunFinalize": {
          if (action.reason === "gate_failed" || action.reason === "gate_no_progress") {
            yield* skipSessionEnd("gate_failed")
          }
          let status = action.status
          let reason = action.reason
          if (status === "success" && config.finalize !== undefined) {
            const fin = yield* stages.run(
              "finalize",
              1,
              runCommand(ctx, "finalize", { ref: "finalize", command: config.finalize.command, timeoutMs: config.finalize.timeoutMs }),
              (r) => ({ status: r.passed ? "pass" : "fail", reason: null, result: r })
            )
            if (!fin.passed) {
              status = "failed"
              reason = "finalize_failed"
            }
          }
          if (status === "success" && env.integration !== null) {
            const integrated = yield* runIntegrationStage({
              integration: env.integration,
              stages,
              recorder,
              emit,
              runId,
              issueId: issue.id,
              workspace: ws
            })
            report.integration = integrated
            if (integrated.status !== "merged") {
              status = "failed"
              reason = integrationFailureReason(integrated)
            }
          }
          report.head_sha = yield* headSha(ws.path).pipe(Effect.orElseSucceed(() => null))
          yield* finishRecord(status, reason)
          step = { state: { _tag: "Done", status, reason }, action: { _tag: "None" } }
          continue
        }
        case "FinishSessionEnd":
        case "RunFixer":
        case "None":
          return yield* Effect.dieMessage(`issue ${issue.id}: no interpreter for ${action._tag} in ${step.state._tag}`)
      }
      step = transition(bounds, step.state, event)
    }
    return report as IssueReport
  }).pipe(Effect.scoped)
