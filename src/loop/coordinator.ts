import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import { Data, Effect, Option } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { Fixer } from "../services/fixer.js"
import { LoopRecorder, type LoopRecorderService } from "../services/loop-recorder.js"
import type { LoopRunRecord } from "../services/loop-records.js"
import { Telemetry } from "../services/telemetry.js"
import { makeRunAbort, RunAbort } from "./abort.js"
import { type IntegrationStrategy, type LoopConfig, LoopConfigError } from "./config.js"
import { acquireIntegration, integrationBranchName } from "./integration.js"
import { beadsClient, type BeadsClient } from "./beads.js"
import { type Issue, loadIssues } from "./issues.js"
import { type LiveIssue, scheduleLive } from "./live-beads.js"
import { type RunEnv, runIssue, skipBlockedIssue, skipIssue } from "./issue-run.js"
import { countsOf, type IssueReport, type LoopRunResult, runOutcome, unstartedReport } from "./report.js"
import { nowIso } from "./results.js"
import { runRunEndStage } from "./run-end-stage.js"
import { createRunFolder, eventEmitter, newRunId } from "./run-folder.js"
import { scheduleIssues } from "./scheduler.js"
import { git, headSha, refExists } from "./workspace.js"

/** A `--resume` that cannot be done: no such run, a run still running, nothing left to do (exit 2). */
export class LoopResumeError extends Data.TaggedError("LoopResumeError")<{
  readonly runId: string
  readonly message: string
}> {}

export interface RunLoopOptions {
  /** Resume this recorded run instead of starting a new one. */
  readonly resume?: string
  /**
   * At most this many issues in a new run: from an issues file, the first N in
   * scheduling order (dependencies come first, so the set is closed under them);
   * with live beads, the first N claimed (a resume's recorded issues count too).
   */
  readonly maxIssues?: number
}

/** Skip reasons of issues that never started because the run stopped: a resume starts them. */
const ABORT_SKIPS = new Set(["sigint", "killed", "run_aborted", "process_crash"])

/**
 * Whether a resume works an issue again: it was interrupted or never started (pending,
 * skipped because the run stopped), or skipped because a dependency did not succeed —
 * the scheduler decides that again, as the dependency may now succeed.
 */
export const needsRerun = (issue: LoopRunRecord["issues"][number]): boolean =>
  issue.status === "pending" || issue.status === "running" || issue.status === "interrupted" ||
  (issue.status === "skipped" &&
    (issue.reason === null || ABORT_SKIPS.has(issue.reason) || issue.reason.startsWith("dependency_failed:")))

/** What a run (new or resumed) starts from. */
interface RunStart {
  readonly runId: string
  readonly runDir: string
  readonly baseSha: string
  readonly attempt: number
  readonly strategy: IntegrationStrategy
  readonly branch: string | null
  /** Issues in scheduling order (finished ones first on a resume). */
  readonly issues: ReadonlyArray<Issue>
  /** The reports of issues a resume keeps as they are. */
  readonly finished: ReadonlyMap<string, IssueReport>
  /** The order of the run's issues in its result. */
  readonly order: ReadonlyArray<string>
}

const startNewRun = (config: LoopConfig, issues: ReadonlyArray<Issue>, recorder: LoopRecorderService) =>
  Effect.gen(function*() {
    const startedAt = yield* nowIso
    const runId = newRunId(startedAt)
    const runDir = yield* createRunFolder(config.workdir, runId)
    const baseSha = yield* headSha(config.repo)
    const { strategy } = config.integration
    const branch = strategy === "none" ? null : integrationBranchName(config.integration.branch, runId)
    if (branch !== null && (yield* refExists(config.repo, `refs/heads/${branch}`))) {
      return yield* Effect.fail(
        new LoopConfigError({
          file: config.file,
          key: "integration.branch",
          value: branch,
          message: "the branch exists already; each run needs a new one (put {run_id} in the name)"
        })
      )
    }
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
    yield* recorder.setIntegration(runId, { strategy, branch, baseSha, head: strategy === "none" ? null : baseSha })
    const start: RunStart = {
      runId,
      runDir,
      baseSha,
      attempt: 1,
      strategy,
      branch,
      issues,
      finished: new Map(),
      order: issues.map((i) => i.id)
    }
    return { start, startedAt }
  })

const refuse = (runId: string, message: string) => Effect.fail(new LoopResumeError({ runId, message }))

const startResumedRun = (
  config: LoopConfig,
  runId: string,
  source: ReadonlyArray<Issue>,
  recorder: LoopRecorderService
) =>
  Effect.gen(function*() {
    const record = yield* recorder.loadRun(runId)
    if (record === undefined) return yield* refuse(runId, `no loop run ${runId} in this Landscape`)
    if (record.status === "running") {
      return yield* refuse(runId, `loop run ${runId} is still running (pid ${record.owner_pid} on ${record.owner_host})`)
    }
    if (record.status === "completed") return yield* refuse(runId, `loop run ${runId} completed; there is nothing to resume`)
    if (NodePath.resolve(record.repo) !== NodePath.resolve(config.repo)) {
      return yield* refuse(runId, `loop run ${runId} worked in ${record.repo}, but the config names ${config.repo}`)
    }
    const rerun = record.issues.filter(needsRerun)
    if (rerun.length === 0) return yield* refuse(runId, `every issue of loop run ${runId} finished; there is nothing to resume`)
    const byId = new Map(source.map((i) => [i.id, i]))
    const missing = rerun.filter((i) => !byId.has(i.issue_id)).map((i) => i.issue_id)
    if (missing.length > 0) {
      return yield* refuse(runId, `issues ${missing.join(", ")} of loop run ${runId} are not in the issues source`)
    }
    const finished = new Map<string, IssueReport>()
    for (const issue of record.issues) {
      if (needsRerun(issue)) continue
      const stored = issue.result as IssueReport | null
      finished.set(issue.issue_id, stored ?? unstartedReport({ id: issue.issue_id, title: issue.title }, issue.status as never, issue.reason))
    }
    const rerunIds = new Set(rerun.map((i) => i.issue_id))
    const issues: Array<Issue> = [
      ...record.issues.filter((i) => !rerunIds.has(i.issue_id)).map((i): Issue => ({
        id: i.issue_id,
        title: i.title,
        body: "",
        priority: null,
        dependsOn: []
      })),
      ...source.filter((i) => rerunIds.has(i.id))
    ]
    const startedAt = yield* nowIso
    const attempt = yield* recorder.resumeRun(runId, { resumedAt: startedAt, rerun: [...rerunIds] })
    // A run recorded before integration existed (or with strategy none) resumes without it.
    const strategy = (record.integration_strategy ?? "none") as IntegrationStrategy
    const branch = strategy === "none" ? null : record.integration_branch
    const start: RunStart = {
      runId,
      runDir: record.run_dir,
      baseSha: record.base_sha ?? (yield* headSha(config.repo)),
      attempt,
      strategy: branch === null ? "none" : strategy,
      branch,
      issues,
      finished,
      order: record.issues.map((i) => i.issue_id)
    }
    // Worktrees a crashed attempt left behind (their branches and commits stay).
    const stale = config.keepWorktrees
      ? []
      : rerun.flatMap((i) => (i.worktree !== null && NodeFs.existsSync(i.worktree) ? [i.worktree] : []))
    return { start, startedAt, rerun: [...rerunIds], stale }
  })

/**
 * The issues of a live-beads run: none for a new run (the tracker is asked as the run
 * goes; one `ready` call first checks that it answers), and for a resume the issues to
 * work again, as the tracker shows them now.
 */
const liveSource = (
  config: LoopConfig,
  client: BeadsClient,
  recorder: LoopRecorderService,
  resume: string | undefined
) =>
  Effect.gen(function*() {
    const trackerError = (e: { command: string; message: string }) =>
      new LoopConfigError({
        file: config.file,
        key: "issues.command",
        value: client.program,
        message: `the beads tracker does not answer (${e.command}: ${e.message})`
      })
    if (resume === undefined) {
      yield* client.ready.pipe(Effect.mapError(trackerError))
      return [] as ReadonlyArray<Issue>
    }
    const record = yield* recorder.loadRun(resume)
    if (record === undefined) return [] as ReadonlyArray<Issue>
    const ids = record.issues.filter(needsRerun).map((i) => i.issue_id)
    return yield* Effect.forEach(ids, (id) =>
      client.show(id).pipe(
        Effect.map((issue): LiveIssue => ({ ...issue, recorded: true })),
        Effect.mapError(trackerError)
      ))
  })

/**
 * Runs an issue loop: up to `max_agents` issues at once (dependencies first), each in
 * its own worktree through the lifecycle; each issue that succeeds is merged into the
 * run's integration branch, from whose head later issues start; then the single
 * run_end stage, in the integration branch's worktree. The run's abort signal is the
 * `RunAbort` service when provided (the CLI wires SIGINT to it), otherwise a private
 * one that only `failure_mode: abort` can trigger. Every step is written to the audit
 * trail through the `LoopRecorder` as it happens.
 *
 * With `resume`, a recorded run that is not running is taken over: its finished issues
 * keep their records, the others are worked again (from the integration head), then
 * run_end runs.
 */
export const runLoop = Effect.fn("runledger.loop.run")(function*(config: LoopConfig, options: RunLoopOptions = {}) {
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
  const issueSource = config.issues
  const recorder = yield* LoopRecorder
  const client: BeadsClient | null = issueSource.kind === "live-beads" ? beadsClient(issueSource.command, config.repo) : null
  const source: ReadonlyArray<Issue> = client === null
    ? yield* loadIssues(issueSource as { kind: "file" | "beads"; path: string }).pipe(
      Effect.map((all) => options.resume === undefined && options.maxIssues !== undefined ? all.slice(0, options.maxIssues) : all)
    )
    : yield* liveSource(config, client, recorder, options.resume)
  const telemetry = yield* Telemetry
  const abort = Option.getOrElse(yield* Effect.serviceOption(RunAbort), () => undefined) ?? (yield* makeRunAbort)
  const opened = options.resume === undefined
    ? { ...(yield* startNewRun(config, source, recorder)), rerun: null, stale: [] }
    : yield* startResumedRun(config, options.resume, source, recorder)
  const { start, startedAt } = opened
  const { runDir, runId } = start
  const emit = eventEmitter(runDir, runId, telemetry)
  yield* Effect.annotateCurrentSpan({ "runledger.run_id": runId, "runledger.kind": "loop" })
  yield* telemetry.emit({ _tag: "RunStarted", runId, kind: "loop", at: startedAt })
  if (opened.rerun !== null) {
    yield* emit(`[run] resumed: run_id=${runId}, attempt=${start.attempt}, rerun=${opened.rerun.join(",")}`)
  }
  const gitLock = (yield* Effect.makeSemaphore(1)).withPermits(1)
  for (const path of opened.stale) {
    yield* git(config.repo, "worktree", "remove", "--force", path).pipe(Effect.ignore)
  }
  const integration = start.strategy === "none" || start.branch === null
    ? null
    : yield* acquireIntegration({
      repo: config.repo,
      root: NodePath.join(config.workdir, "worktrees"),
      runId,
      branch: start.branch,
      strategy: start.strategy,
      baseSha: start.baseSha,
      keep: config.keepWorktrees,
      resume: opened.rerun !== null,
      lock: gitLock
    })
  if (integration !== null) {
    yield* emit(`[integration] branch: ${integration.branch}, strategy=${integration.strategy}, head=${yield* integration.head}`)
  }
  const env: RunEnv = { config, runId, runDir, recorder, abort, emit, gitLock, integration, attempt: start.attempt }

  const kept = (issue: Issue) => start.finished.get(issue.id)
  let epics: LoopRunResult["epics"] = []
  let killed: boolean
  let reports: ReadonlyArray<IssueReport>
  if (client === null) {
    const scheduled = yield* scheduleIssues({
      issues: start.issues,
      maxAgents: config.maxAgents,
      abort,
      run: (issue: Issue) => {
        const report = kept(issue)
        return report !== undefined ? Effect.succeed(report) : runIssue(env, issue)
      },
      skip: (issue, blocked) => {
        const report = kept(issue)
        return report !== undefined ? Effect.succeed(report) : skipBlockedIssue(env, issue, blocked)
      }
    })
    // After a hard kill the issues that never started are recorded too: the trail matches
    // the result. Those a resume kept stay as recorded.
    yield* Effect.forEach(scheduled.unstarted.filter((i) => kept(i) === undefined), (issue) => skipIssue(env, issue, "killed"), {
      discard: true
    })
    killed = scheduled.killed
    reports = scheduled.reports
  } else {
    const live = yield* scheduleLive({
      env,
      client,
      maxAgents: config.maxAgents,
      maxIssues: options.maxIssues,
      initial: start.issues.filter((i) => kept(i) === undefined) as unknown as ReadonlyArray<LiveIssue>,
      taken: new Set(start.order),
      already: start.order.length,
      epicCompletion: config.epicCompletion
    })
    // A resume's issues that did not start again (the run was stopped, or --max-issues).
    const why = live.killed ? "killed" : Option.getOrElse(yield* abort.reason, () => "max_issues")
    const notStarted = yield* Effect.forEach(live.unstarted, (issue) => skipIssue(env, issue, why))
    killed = live.killed
    reports = [...start.finished.values(), ...live.reports, ...notStarted]
    epics = live.epics
  }
  const byId = new Map(reports.map((r) => [r.issue_id, killed ? kept({ id: r.issue_id } as Issue) ?? r : r]))
  const known = new Set(start.order)
  const order = [...start.order, ...reports.map((r) => r.issue_id).filter((id) => !known.has(id))]
  const ordered = order.flatMap((id) => {
    const r = byId.get(id)
    return r === undefined ? [] : [r]
  })
  const counts = countsOf(ordered)
  const aborted = killed ? Option.some("killed") : yield* abort.reason

  const { completedAt, head, runEnd } = yield* runRunEndStage(env, {
    counts,
    aborted,
    baseSha: start.baseSha,
    integration
  })
  // A Ctrl-C during run_end itself interrupts the run too.
  const [status, reason] = runOutcome(Option.isSome(aborted) ? aborted : yield* abort.reason, counts, runEnd)
  yield* recorder.finishRun(runId, {
    status,
    reason,
    completedAt,
    counts,
    runEnd: { status: runEnd.status, reason: runEnd.reason }
  })
  yield* telemetry.emit({
    _tag: "RunFinished",
    runId,
    status,
    at: completedAt,
    durationMs: Date.parse(completedAt) - Date.parse(startedAt),
    result: { run_id: runId, status, reason, counts, run_end: { status: runEnd.status, reason: runEnd.reason } }
  })
  const result: LoopRunResult = {
    run_id: runId,
    status,
    reason,
    run_dir: runDir,
    counts,
    issues: ordered,
    run_end: runEnd,
    integration: { strategy: start.strategy, branch: integration?.branch ?? null, base_sha: start.baseSha, head },
    attempt: start.attempt,
    epics
  }
  return result
}, Effect.scoped)

export type RunLoopRequirements = CommandExecutor.CommandExecutor | LoopRecorder | Telemetry | Fixer
