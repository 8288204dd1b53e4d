import * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as SqlClient from "@effect/sql/SqlClient"
import { Deferred, Effect, Exit, Fiber, Option } from "effect"
import * as NodeCrypto from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { Fixer } from "../services/fixer.js"
import { Telemetry } from "../services/telemetry.js"
import { makeRunAbort, RunAbort, type RunAbortService } from "./abort.js"
import { type LoopConfig, LoopConfigError } from "./config.js"
import { type Issue, loadIssues } from "./issues.js"
import { boundsFrom, type Event, initial, isTerminal, type IssueStatus, type Step, transition } from "./lifecycle.js"
import { type IssueCounts, type LoopRecorderService, type LoopRunStatus, makeLoopRecorder } from "./recording.js"
import {
  type CommandResult,
  failureText,
  nowIso,
  type ReviewOutcome,
  runCommand,
  type RunEndResult,
  type SessionEndResult,
  type StageContext,
  validationPassed
} from "./results.js"
import { findingsText, runReviewer } from "./review.js"
import { runRunEnd } from "./run-end.js"
import { runSessionEnd, skippedSessionEnd } from "./session-end.js"
import { acquireWorkspace, commitsSince, headSha, isClean, writeDiff } from "./workspace.js"

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
}

export interface LoopRunResult {
  readonly run_id: string
  readonly status: LoopRunStatus
  readonly reason: string | null
  readonly run_dir: string
  readonly counts: IssueCounts
  readonly issues: ReadonlyArray<IssueReport>
  readonly run_end: RunEndResult
}

const newRunId = (startedAt: string) =>
  `loop-${startedAt.replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z")}-${NodeCrypto.randomBytes(3).toString("hex")}`

const RESOLUTIONS = new Set(["no_change", "already_complete", "obsolete"])

/** Reads `$RESULT_FILE`: a resolution passes the gate without a commit. */
const readResolution = (file: string): "no_change" | "already_complete" | "obsolete" | null => {
  try {
    const parsed = JSON.parse(NodeFs.readFileSync(file, "utf8")) as { resolution?: unknown }
    return typeof parsed.resolution === "string" && RESOLUTIONS.has(parsed.resolution)
      ? parsed.resolution as "no_change"
      : null
  } catch {
    return null
  }
}

const sha256 = (text: string) => NodeCrypto.createHash("sha256").update(text).digest("hex")

interface RunEnv {
  readonly config: LoopConfig
  readonly runId: string
  readonly runDir: string
  readonly recorder: LoopRecorderService
  readonly abort: RunAbortService
  readonly emit: (line: string) => Effect.Effect<void>
  readonly gitLock: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

/** Drives one issue through the lifecycle machine, performing each action it asks for. */
const runIssue = (env: RunEnv, issue: Issue) =>
  Effect.gen(function*() {
    const { abort, config, emit, recorder, runId } = env
    const bounds = boundsFrom(config)
    const report = {
      issue_id: issue.id,
      title: issue.title,
      status: "skipped" as IssueStatus,
      reason: null as string | null,
      branch: null as string | null,
      base_sha: null as string | null,
      head_sha: null as string | null,
      gate_attempts: 0,
      review_rounds: 0,
      session_end: null as SessionEndResult | null,
      review: null as ReviewOutcome | null
    }
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
        yield* emit(`[issue] finished: issue_id=${issue.id}, status=${status}${reason === null ? "" : `, reason=${reason}`}`)
      })

    // Pending issues never start once the run is aborted.
    const pendingAbort = yield* abort.reason
    if (Option.isSome(pendingAbort)) {
      yield* finishRecord("skipped", pendingAbort.value)
      return report as IssueReport
    }

    const issueDir = NodePath.join(env.runDir, "issues", issue.id.replace(/[^A-Za-z0-9._-]+/g, "_"))
    const logDir = NodePath.join(issueDir, "logs")
    NodeFs.mkdirSync(logDir, { recursive: true })
    const ws = yield* acquireWorkspace({
      repo: config.repo,
      root: NodePath.join(config.workdir, "worktrees", runId),
      runId,
      issueId: issue.id,
      keep: config.keepWorktrees,
      lock: env.gitLock
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

    const files = {
      issue: NodePath.join(issueDir, "issue.md"),
      result: NodePath.join(issueDir, "result.json"),
      feedback: NodePath.join(issueDir, "feedback.md"),
      diff: NodePath.join(issueDir, "diff.patch"),
      sessionEnd: NodePath.join(issueDir, "session_end_result.json")
    }
    NodeFs.writeFileSync(files.issue, `# ${issue.title}\n\nid: ${issue.id}\n\n${issue.body}\n`)
    const baseEnv: Record<string, string> = {
      RUN_ID: runId,
      ISSUE_ID: issue.id,
      ISSUE_FILE: files.issue,
      RESULT_FILE: files.result,
      BASE_SHA: ws.baseSha,
      ISSUE_DIR: issueDir
    }
    let currentStage: string | null = null
    let logIndex = 0
    const ctx: StageContext = {
      runId,
      issueId: issue.id,
      cwd: ws.path,
      env: baseEnv,
      logDir,
      graceMs: config.killGraceMs,
      abort,
      emit,
      onCommand: (stage, result) =>
        recorder.recordCommand({ stageId: currentStage, runId, issueId: issue.id, stage, result }).pipe(Effect.orDie),
      nextLogIndex: () => ++logIndex
    }
    const stage = <A, E, R>(
      name: string,
      attempt: number,
      body: Effect.Effect<A, E, R>,
      summarize: (a: A) => { status: string; reason: string | null; result: unknown }
    ) =>
      Effect.gen(function*() {
        const stageId = yield* recorder.startStage({ runId, issueId: issue.id, stage: name, attempt, startedAt: yield* nowIso })
        currentStage = stageId
        const exit = yield* Effect.exit(body)
        const completedAt = yield* nowIso
        if (Exit.isSuccess(exit)) {
          yield* recorder.finishStage(stageId, { ...summarize(exit.value), completedAt })
        } else {
          yield* recorder.finishStage(stageId, {
            status: "interrupted",
            reason: Exit.isInterrupted(exit) ? "killed" : "error",
            completedAt,
            result: null
          }).pipe(Effect.ignore)
        }
        currentStage = null
        return yield* exit
      })
    const skipSessionEnd = (reason: string) =>
      Effect.gen(function*() {
        report.session_end = skippedSessionEnd(reason)
        yield* emit(`[trigger] session_end skipped: issue_id=${issue.id}, reason=${reason}`)
        const at = yield* nowIso
        const stageId = yield* recorder.startStage({ runId, issueId: issue.id, stage: "session_end", attempt: 1, startedAt: at })
        yield* recorder.finishStage(stageId, { status: "skipped", reason, completedAt: at, result: report.session_end })
      })

    const codeReview = (reviewStage: string) =>
      Effect.gen(function*() {
        const reviewer = config.reviewer!
        const head = yield* writeDiff(ws.path, ws.baseSha, files.diff).pipe(Effect.orElseSucceed(() => ""))
        return yield* runReviewer(ctx, reviewStage, reviewer, {
          HEAD_SHA: head,
          DIFF_FILE: files.diff,
          REVIEW_RANGE: `${ws.baseSha}..${head}`,
          SESSION_END_RESULT_FILE: files.sessionEnd
        })
      })

    let feedback: string | null = null
    let previousGate: { head: string; failure: string } | null = null
    let step: Step = transition(bounds, initial, { _tag: "Start" })

    // If the whole run is killed (second SIGINT), the issue still ends on the record.
    yield* Effect.addFinalizer((exit) =>
      Exit.isInterrupted(exit) && !isTerminal(step.state)
        ? finishRecord("interrupted", "killed").pipe(Effect.ignore)
        : Effect.void
    )

    while (!isTerminal(step.state)) {
      const action = step.action
      if (action._tag !== "RunFinalize" && action._tag !== "None") {
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
          NodeFs.rmSync(files.result, { force: true })
          const implEnv: Record<string, string> = {
            ATTEMPT: String(action.attempt),
            MAX_ATTEMPTS: String(bounds.maxGateAttempts)
          }
          if (feedback !== null) {
            NodeFs.writeFileSync(files.feedback, feedback)
            implEnv["FEEDBACK_FILE"] = files.feedback
          }
          yield* stage(
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
          event = { _tag: "ImplementerDone", resolution: readResolution(files.result) }
          break
        }
        case "RunGate": {
          const gate = yield* stage(
            "gate",
            report.gate_attempts,
            Effect.gen(function*() {
              const results: Array<CommandResult> = []
              for (const def of config.gate.commands) {
                results.push(
                  yield* runCommand(ctx, "gate", {
                    ...def,
                    env: { ATTEMPT: String(action.attempt), MAX_ATTEMPTS: String(bounds.maxGateAttempts) }
                  })
                )
              }
              const commits = yield* commitsSince(ws.path, ws.baseSha).pipe(Effect.orElseSucceed(() => 0))
              const commandsPassed = validationPassed(results, (ref) => config.commands[ref]?.allowFail ?? false)
              const committed = !config.gate.requireCommit || commits > 0
              const failure = (commandsPassed ? "" : failureText(results)) +
                (committed ? "" : `No commit past base_sha ${ws.baseSha} on branch ${ws.branch}.\n`)
              return { passed: commandsPassed && committed, failure, results }
            }),
            (g) => ({ status: g.passed ? "pass" : "fail", reason: g.passed ? null : "gate_failed", result: g.results })
          )
          let noProgress = false
          if (!gate.passed) {
            const head = yield* headSha(ws.path).pipe(Effect.orElseSucceed(() => ""))
            const clean = yield* isClean(ws.path).pipe(Effect.orElseSucceed(() => false))
            const signature = sha256(gate.failure.replace(/\d+(\.\d+)?m?s\b/g, ""))
            noProgress = previousGate !== null && previousGate.head === head && clean &&
              previousGate.failure === signature
            previousGate = { head, failure: signature }
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
          const result = yield* stage(
            "session_end",
            action.round,
            runSessionEnd({
              ctx,
              config: config.sessionEnd!,
              bounds,
              round: action.round,
              codeReview: codeReview("session_end"),
              fixerCommand: config.fixer?.command ?? ""
            }),
            (r) => ({ status: r.status, reason: r.reason, result: r })
          )
          report.session_end = result
          event = {
            _tag: "SessionEndFinished",
            status: result.status,
            abortRun: result.status === "fail" && config.sessionEnd!.failureMode === "abort"
          }
          break
        }
        case "RunReviewer": {
          report.review_rounds = action.round
          NodeFs.writeFileSync(files.sessionEnd, JSON.stringify(report.session_end, null, 2))
          const outcome = yield* stage(
            "review",
            action.round,
            codeReview("review"),
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
          event = { _tag: "ReviewResult", outcome: outcome.status }
          break
        }
        case "RunFinalize": {
          if (action.reason === "gate_failed" || action.reason === "gate_no_progress") {
            yield* skipSessionEnd("gate_failed")
          }
          let status = action.status
          let reason = action.reason
          if (status === "success" && config.finalize !== undefined) {
            const fin = yield* stage(
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

const countsOf = (issues: ReadonlyArray<IssueReport>): IssueCounts => ({
  total: issues.length,
  success: issues.filter((i) => i.status === "success").length,
  failed: issues.filter((i) => i.status === "failed").length,
  interrupted: issues.filter((i) => i.status === "interrupted").length,
  skipped: issues.filter((i) => i.status === "skipped").length
})

/**
 * Runs an issue loop: up to `max_agents` issues at once (dependencies first), each in
 * its own worktree through the lifecycle, then the single run_end stage. The run's
 * abort signal is the `RunAbort` service when provided (the CLI wires SIGINT to it),
 * otherwise a private one that only `failure_mode: abort` can trigger.
 */
export const runLoop = Effect.fn("loop.runLoop")(function*(config: LoopConfig) {
  const fixer = yield* Fixer
  const needsFixer = config.sessionEnd?.failureMode === "remediate" || config.runEnd?.failureMode === "remediate"
  if (needsFixer && !fixer.available) {
    return yield* Effect.fail(
      new LoopConfigError({
        file: config.file,
        key: "fixer",
        message: "failure_mode remediate needs a fixer, but the Fixer provided is NoFixer; provide CommandFixer(config)"
      })
    )
  }
  if (config.issues === undefined) {
    return yield* Effect.fail(
      new LoopConfigError({ file: config.file, key: "issues", message: "no issue source: set `issues` or `beads`, or pass --issues" })
    )
  }
  const issues = yield* loadIssues(config.issues)
  const telemetry = yield* Telemetry
  const recorder = yield* makeLoopRecorder
  const abort = Option.getOrElse(yield* Effect.serviceOption(RunAbort), () => undefined) ?? (yield* makeRunAbort)
  const startedAt = yield* nowIso
  const runId = newRunId(startedAt)
  const runDir = NodePath.join(config.workdir, "runs", runId)
  NodeFs.mkdirSync(runDir, { recursive: true })
  const eventLog = NodePath.join(runDir, "events.jsonl")
  const emit = (line: string) =>
    Effect.gen(function*() {
      const at = yield* nowIso
      yield* Effect.sync(() => NodeFs.appendFileSync(eventLog, JSON.stringify({ at, run_id: runId, line }) + "\n")).pipe(
        Effect.ignore
      )
      yield* telemetry.emit({ _tag: "TriggerEvent", runId, line, at })
    })
  const runBaseSha = yield* headSha(config.repo)
  yield* recorder.beginRun({
    runId,
    startedAt,
    configFile: config.file,
    configJson: JSON.stringify(config),
    repo: config.repo,
    runDir,
    maxAgents: config.maxAgents,
    issues: issues.map((i) => ({ id: i.id, title: i.title, priority: i.priority }))
  })
  yield* telemetry.emit({ _tag: "RunStarted", runId, kind: "loop", at: startedAt })
  const gitLock = (yield* Effect.makeSemaphore(1)).withPermits(1)
  const env: RunEnv = { config, runId, runDir, recorder, abort, emit, gitLock }

  // Each issue waits for its dependencies; the topological order guarantees that a
  // dependency has started (or finished) before a dependent takes an agent slot.
  const done = new Map<string, Deferred.Deferred<IssueStatus>>()
  for (const issue of issues) done.set(issue.id, yield* Deferred.make<IssueStatus>())
  const runOne = (issue: Issue) =>
    Effect.gen(function*() {
      const blocked: Array<string> = []
      for (const dep of issue.dependsOn) {
        const d = done.get(dep)
        if (d !== undefined && (yield* Deferred.await(d)) !== "success") blocked.push(dep)
      }
      const report: IssueReport = blocked.length > 0
        ? yield* Effect.gen(function*() {
          const r: IssueReport = {
            issue_id: issue.id,
            title: issue.title,
            status: "skipped",
            reason: `dependency_failed:${blocked.join(",")}`,
            branch: null,
            base_sha: null,
            head_sha: null,
            gate_attempts: 0,
            review_rounds: 0,
            session_end: null,
            review: null
          }
          yield* recorder.finishIssue(runId, issue.id, {
            status: r.status,
            reason: r.reason,
            headSha: null,
            gateAttempts: 0,
            reviewRounds: 0,
            result: r,
            completedAt: yield* nowIso
          })
          return r
        })
        : yield* runIssue(env, issue)
      yield* Deferred.succeed(done.get(issue.id)!, report.status)
      return report
    }).pipe(Effect.onExit((exit) => Exit.isSuccess(exit) ? Effect.void : Deferred.succeed(done.get(issue.id)!, "interrupted")))

  const work = yield* Effect.fork(Effect.forEach(issues, runOne, { concurrency: config.maxAgents }))
  // A hard kill interrupts every issue now; their supervisors SIGKILL without grace.
  const killer = yield* Effect.fork(Effect.zipRight(abort.awaitHardKill, Fiber.interrupt(work)))
  const workExit = yield* Fiber.await(work)
  yield* Fiber.interrupt(killer)
  const killed = Exit.isInterrupted(workExit)
  if (Exit.isFailure(workExit) && !killed) return yield* Effect.failCause(workExit.cause)
  const reports: ReadonlyArray<IssueReport> = Exit.isSuccess(workExit)
    ? workExit.value
    : issues.map((i) => ({
      issue_id: i.id,
      title: i.title,
      status: "interrupted" as const,
      reason: "killed",
      branch: null,
      base_sha: null,
      head_sha: null,
      gate_attempts: 0,
      review_rounds: 0,
      session_end: null,
      review: null
    }))
  const counts = countsOf(reports)
  const aborted = killed ? Option.some("killed") : yield* abort.reason

  let logIndex = 0
  const runLogDir = NodePath.join(runDir, "run_end")
  NodeFs.mkdirSync(runLogDir, { recursive: true })
  let runEndStage: string | null = null
  const runCtx: StageContext = {
    runId,
    issueId: null,
    cwd: config.repo,
    env: { RUN_ID: runId, BASE_SHA: runBaseSha, ISSUE_ID: "", ISSUE_DIR: runLogDir },
    logDir: runLogDir,
    graceMs: config.killGraceMs,
    abort,
    emit,
    onCommand: (stage, result) =>
      recorder.recordCommand({ stageId: runEndStage, runId, issueId: null, stage, result }).pipe(Effect.orDie),
    nextLogIndex: () => ++logIndex
  }
  const runEndStartedAt = yield* nowIso
  if (config.runEnd !== undefined && Option.isNone(aborted)) {
    runEndStage = yield* recorder.startStage({ runId, issueId: null, stage: "run_end", attempt: 1, startedAt: runEndStartedAt })
  }
  const diffFile = NodePath.join(runLogDir, "diff.patch")
  const runEnd = yield* runRunEnd({
    ctx: runCtx,
    config: config.runEnd,
    successCount: counts.success,
    failureCount: counts.failed,
    totalCount: counts.total,
    aborted,
    fixerCommand: config.fixer?.command ?? "",
    codeReview: Effect.gen(function*() {
      const head = yield* writeDiff(config.repo, runBaseSha, diffFile).pipe(Effect.orElseSucceed(() => ""))
      return yield* runReviewer(runCtx, "run_end", config.reviewer!, {
        HEAD_SHA: head,
        DIFF_FILE: diffFile,
        REVIEW_RANGE: `${runBaseSha}..${head}`
      })
    })
  })
  const completedAt = yield* nowIso
  if (runEndStage !== null) {
    yield* recorder.finishStage(runEndStage, { status: runEnd.status, reason: runEnd.reason, completedAt, result: runEnd })
  } else {
    const stageId = yield* recorder.startStage({ runId, issueId: null, stage: "run_end", attempt: 1, startedAt: completedAt })
    yield* recorder.finishStage(stageId, { status: runEnd.status, reason: runEnd.reason, completedAt, result: runEnd })
  }

  const abortReason = Option.getOrNull(aborted)
  const [status, reason]: [LoopRunStatus, string | null] = abortReason === "sigint" || abortReason === "killed"
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
  yield* recorder.finishRun(runId, {
    status,
    reason,
    completedAt,
    counts,
    runEnd: { status: runEnd.status, reason: runEnd.reason }
  })
  yield* telemetry.emit({ _tag: "RunFinished", runId, status, at: completedAt })
  const result: LoopRunResult = { run_id: runId, status, reason, run_dir: runDir, counts, issues: reports, run_end: runEnd }
  return result
})

export type RunLoopRequirements = CommandExecutor.CommandExecutor | SqlClient.SqlClient | Telemetry | Fixer
