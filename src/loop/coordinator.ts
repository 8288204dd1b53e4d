import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import { Effect, Option } from "effect"
import { Fixer } from "../services/fixer.js"
import { LoopRecorder } from "../services/loop-recorder.js"
import { Telemetry } from "../services/telemetry.js"
import { makeRunAbort, RunAbort } from "./abort.js"
import { type LoopConfig, LoopConfigError } from "./config.js"
import { type Issue, loadIssues } from "./issues.js"
import { type RunEnv, runIssue, skipBlockedIssue, skipIssue } from "./issue-run.js"
import { countsOf, type LoopRunResult, runOutcome } from "./report.js"
import { nowIso } from "./results.js"
import { runRunEndStage } from "./run-end-stage.js"
import { createRunFolder, eventEmitter, newRunId } from "./run-folder.js"
import { scheduleIssues } from "./scheduler.js"
import { headSha } from "./workspace.js"

/**
 * Runs an issue loop: up to `max_agents` issues at once (dependencies first), each in
 * its own worktree through the lifecycle, then the single run_end stage. The run's
 * abort signal is the `RunAbort` service when provided (the CLI wires SIGINT to it),
 * otherwise a private one that only `failure_mode: abort` can trigger. Every step is
 * written to the audit trail through the `LoopRecorder` as it happens.
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
  const recorder = yield* LoopRecorder
  const abort = Option.getOrElse(yield* Effect.serviceOption(RunAbort), () => undefined) ?? (yield* makeRunAbort)
  const startedAt = yield* nowIso
  const runId = newRunId(startedAt)
  const runDir = yield* createRunFolder(config.workdir, runId)
  const emit = eventEmitter(runDir, runId, telemetry)
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

  const { killed, reports, unstarted } = yield* scheduleIssues({
    issues,
    maxAgents: config.maxAgents,
    abort,
    run: (issue: Issue) => runIssue(env, issue),
    skip: (issue, blocked) => skipBlockedIssue(env, issue, blocked)
  })
  // After a hard kill the issues that never started are recorded too: the trail matches the result.
  yield* Effect.forEach(unstarted, (issue) => skipIssue(env, issue, "killed"), { discard: true })
  const counts = countsOf(reports)
  const aborted = killed ? Option.some("killed") : yield* abort.reason

  const { completedAt, runEnd } = yield* runRunEndStage(env, { counts, aborted, baseSha: runBaseSha })
  // A Ctrl-C during run_end itself interrupts the run too.
  const [status, reason] = runOutcome(Option.isSome(aborted) ? aborted : yield* abort.reason, counts, runEnd)
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

export type RunLoopRequirements = CommandExecutor.CommandExecutor | LoopRecorder | Telemetry | Fixer
