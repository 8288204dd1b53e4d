/**
 * The live-beads scheduler (`issues: {source: beads}`): instead of a fixed list, the
 * loop asks the tracker for ready work whenever an agent slot is free, claims an issue
 * before starting it, closes it once its work is integrated (or releases it when it
 * did not succeed), and re-polls as issues finish — so an issue that this run's work
 * unblocked is picked up in the same run. Epics are never worked; when the tracker says
 * an epic's children are all closed, the run records it, runs the `epic_completion`
 * trigger (if configured) and closes the epic.
 *
 * Every tracker call is a recorded stage (`claim`, `close`, `release`, `epic_completion`)
 * whose result holds the argv, exit code and output.
 */
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import { type Cause, Effect, Either, Exit, Fiber, Option, Queue } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { type BeadsCall, type BeadsClient, type BeadsEpic, BeadsError, type BeadsIssue, workable } from "./beads.js"
import type { EpicCompletionConfig } from "./config.js"
import type { Issue } from "./issues.js"
import { type RunEnv, runIssue, skipIssue } from "./issue-run.js"
import { type EpicReport, type IssueReport, unstartedReport } from "./report.js"
import { type CommandResult, runCommand, type StageContext } from "./results.js"
import { makeStageTrail } from "./stage-trail.js"
import { git, safe } from "./workspace.js"

/** A ready issue, or one a resume works again (its loop_issues row exists already). */
export interface LiveIssue extends BeadsIssue {
  readonly recorded?: boolean
}

/** How long one tracker call may take before the loop gives up on it. */
const CALL_TIMEOUT = "60 seconds"

const callResult = (e: BeadsError) => ({ command: e.command, exit_code: e.exitCode, message: e.message })

export const scheduleLive = (options: {
  readonly env: RunEnv
  readonly client: BeadsClient
  readonly maxAgents: number
  /** At most this many issues in the run (those a resume keeps count too). */
  readonly maxIssues: number | undefined
  /** Issues to work before asking for new ones (a resume's). */
  readonly initial: ReadonlyArray<LiveIssue>
  /** Ids the run has already (never claimed again). */
  readonly taken: ReadonlySet<string>
  /** Issues already in the run. */
  readonly already: number
  readonly epicCompletion: EpicCompletionConfig | undefined
}) =>
  Effect.gen(function*() {
    const { client, env } = options
    const { abort, emit, recorder, runId } = env
    const taken = new Set(options.taken)
    const pending = [...options.initial]
    const started = new Map<string, Issue>()
    const finished = new Map<string, IssueReport>()
    const epics: Array<EpicReport> = []
    const epicsSeen = new Set<string>()
    const epicLock = (yield* Effect.makeSemaphore(1)).withPermits(1)
    const completions = yield* Queue.unbounded<string>()
    const fibers = new Set<Fiber.RuntimeFiber<void>>()
    // An issue that failed (a Landscape write, say) fails the run, as with an issues file.
    let failure: Cause.Cause<IssueError> | undefined
    let inRun = options.already

    /**
     * A tracker call as a stage row of `id` (an issue or an epic); like every stage,
     * the row is closed (`interrupted, killed`) also when a hard kill interrupts the call.
     */
    const recorded = <A extends BeadsCall>(
      id: string,
      stage: string,
      call: Effect.Effect<A, BeadsError, CommandExecutor.CommandExecutor>
    ) =>
      Effect.gen(function*() {
        const outcome = yield* makeStageTrail(recorder, runId, id).run(
          stage,
          1,
          Effect.either(call.pipe(
            Effect.timeoutFail({
              duration: CALL_TIMEOUT,
              onTimeout: () => new BeadsError({ command: `${client.program} ${stage}`, exitCode: null, message: "timed out" })
            })
          )),
          (o) =>
            Either.isRight(o)
              ? { status: "pass", reason: null, result: o.right }
              : { status: "fail", reason: o.left.message, result: callResult(o.left) }
        )
        if (Either.isLeft(outcome)) {
          yield* emit(`[beads] ${stage} failed: issue_id=${id}, ${outcome.left.command}: ${outcome.left.message}`)
        }
        return outcome
      })

    /** The next issue to start: a resume's first, then the tracker's ready set. */
    const nextIssue = Effect.gen(function*() {
      const first = pending.shift()
      if (first !== undefined) return first as LiveIssue | undefined
      const ready = yield* Effect.either(client.ready.pipe(
        Effect.timeoutFail({
          duration: CALL_TIMEOUT,
          onTimeout: () => new BeadsError({ command: `${client.program} ready --json`, exitCode: null, message: "timed out" })
        })
      ))
      if (Either.isLeft(ready)) {
        yield* emit(`[beads] ready failed: ${ready.left.command}: ${ready.left.message}; no new issues are started`)
        return undefined
      }
      return workable(ready.right, taken)[0] as LiveIssue | undefined
    })

    const completeEpic = (epic: BeadsEpic) =>
      Effect.gen(function*() {
        yield* emit(`[epic] children closed: epic_id=${epic.id}, children=${epic.closedChildren}/${epic.totalChildren}`)
        let commands: ReadonlyArray<CommandResult> = []
        const trigger = options.epicCompletion
        if (trigger !== undefined && trigger.commands.length > 0) {
          const trail = makeStageTrail(recorder, runId, epic.id)
          const isFailure = (c: CommandResult) => !c.passed && !trigger.commands.find((d) => d.ref === c.ref)?.allowFail
          commands = yield* trail.run("epic_completion", 1, Effect.scoped(Effect.gen(function*() {
            const logDir = NodePath.join(env.runDir, "epics", safe(epic.id), "logs")
            yield* Effect.sync(() => NodeFs.mkdirSync(logDir, { recursive: true }))
            const cwd = yield* epicWorkspace(env, epic.id)
            let logIndex = 0
            const ctx: StageContext = {
              runId,
              issueId: epic.id,
              cwd,
              env: {
                RUN_ID: runId,
                EPIC_ID: epic.id,
                ISSUE_ID: epic.id,
                ISSUE_DIR: NodePath.dirname(logDir),
                RUNLEDGER_REPO: env.config.repo,
                RUNLEDGER_INTEGRATION_BRANCH: env.integration?.branch ?? ""
              },
              logDir,
              graceMs: env.config.killGraceMs,
              abort,
              emit,
              onCommand: (stage, result) =>
                recorder.recordCommand({ stageId: trail.current(), runId, issueId: epic.id, stage, result }).pipe(Effect.orDie),
              nextLogIndex: () => ++logIndex
            }
            const results: Array<CommandResult> = []
            for (const def of trigger.commands) {
              const r = yield* runCommand(ctx, "epic_completion", { ref: def.ref, command: def.command, timeoutMs: def.timeoutMs })
              results.push(r)
              if (isFailure(r)) break
            }
            return results as ReadonlyArray<CommandResult>
          })), (results) => {
            const bad = results.find(isFailure)
            return { status: bad === undefined ? "pass" : "fail", reason: bad === undefined ? null : `command_failed:${bad.ref}`, result: results }
          })
          const failed = commands.find(isFailure)
          if (failed !== undefined) {
            const report: EpicReport = {
              epic_id: epic.id,
              title: epic.title,
              status: "validation_failed",
              reason: `command_failed:${failed.ref}`,
              commands
            }
            epics.push(report)
            yield* emit(`[epic] completed: epic_id=${epic.id}, status=validation_failed, failed=${failed.ref}`)
            if (trigger.failureMode === "abort") yield* abort.request("epic_completion_failed")
            return
          }
        }
        const closed = yield* recorded(epic.id, "close", client.close(epic.id, `children closed; runledger loop ${runId}`))
        const status = Either.isRight(closed) ? "closed" as const : "close_failed" as const
        epics.push({
          epic_id: epic.id,
          title: epic.title,
          status,
          reason: Either.isRight(closed) ? null : closed.left.message,
          commands
        })
        yield* emit(`[epic] completed: epic_id=${epic.id}, status=${status}`)
      })

    /** After a close: the epics the tracker now finds complete, each handled once. */
    const checkEpics = epicLock(Effect.gen(function*() {
      const listed = yield* Effect.either(client.epics)
      if (Either.isLeft(listed)) {
        yield* emit(`[beads] epic status failed: ${listed.left.command}: ${listed.left.message}`)
        return
      }
      for (const epic of listed.right) {
        if (!epic.eligible || epic.status === "closed" || epicsSeen.has(epic.id)) continue
        epicsSeen.add(epic.id)
        yield* completeEpic(epic)
      }
    }))

    const release = (id: string) => recorded(id, "release", client.release(id))

    const work1 = (issue: LiveIssue) =>
      Effect.gen(function*() {
        const report = yield* runIssue(env, issue)
        finished.set(issue.id, report)
        if (report.status === "success") {
          const head = report.integration?.sha ?? report.head_sha ?? ""
          const closed = yield* recorded(
            issue.id,
            "close",
            client.close(issue.id, `integrated by runledger loop ${runId}${head === "" ? "" : ` at ${head}`}`)
          )
          if (Either.isRight(closed)) yield* checkEpics
        } else {
          yield* release(issue.id)
        }
      })
    type IssueError = Effect.Effect.Error<ReturnType<typeof work1>>
    const runOne = (issue: LiveIssue) =>
      work1(issue).pipe(
        // A hard kill: the issue goes back to the tracker (best effort, bounded).
        Effect.onInterrupt(() => release(issue.id).pipe(Effect.timeout("5 seconds"), Effect.ignore)),
        Effect.catchAllCause((cause) =>
          Effect.sync(() => {
            failure ??= cause
          })
        ),
        Effect.ensuring(Queue.offer(completions, issue.id))
      )

    const loop = Effect.gen(function*() {
      let running = 0
      for (;;) {
        // A resume's own issues are worked whatever the cap; the cap bounds new claims.
        while (
          running < options.maxAgents &&
          (pending.length > 0 || options.maxIssues === undefined || inRun < options.maxIssues)
        ) {
          if (Option.isSome(yield* abort.reason)) break
          const issue = yield* nextIssue
          if (issue === undefined) break
          taken.add(issue.id)
          if (issue.recorded === true && issue.status === "closed") {
            // Closed in the tracker since the earlier attempt: nothing to do.
            started.set(issue.id, issue)
            finished.set(issue.id, yield* skipIssue(env, issue, "closed_in_tracker"))
            continue
          }
          const claim = yield* recorded(issue.id, "claim", client.claim(issue.id))
          if (Either.isLeft(claim)) continue
          if (issue.recorded !== true) {
            yield* recorder.addIssues(runId, [{ id: issue.id, title: issue.title, priority: issue.priority }])
            inRun++
          }
          started.set(issue.id, issue)
          yield* emit(`[beads] claimed: issue_id=${issue.id}, title=${JSON.stringify(issue.title)}`)
          running++
          const fiber = yield* Effect.fork(runOne(issue))
          fibers.add(fiber)
          fiber.addObserver(() => fibers.delete(fiber))
        }
        if (running === 0) break
        yield* Queue.take(completions)
        running--
        if (failure !== undefined) return yield* Effect.failCause(failure)
      }
    }).pipe(
      // Interrupted (a hard kill) or failed: the running issues are interrupted, and
      // waited for, so that each has closed its record before the run goes on.
      Effect.ensuring(Effect.suspend(() => Fiber.interruptAll([...fibers])))
    )

    const work = yield* Effect.fork(loop)
    const killer = yield* Effect.fork(Effect.zipRight(abort.awaitHardKill, Fiber.interrupt(work)))
    const exit = yield* Fiber.await(work)
    yield* Fiber.interrupt(killer)
    const killed = Exit.isInterrupted(exit)
    if (Exit.isFailure(exit) && !killed) return yield* Effect.failCause(exit.cause)
    const reports = [...started.values()].map((i) => finished.get(i.id) ?? unstartedReport(i, "interrupted", "killed"))
    // A resume's issues that never started again (a drain, a kill, --max-issues).
    const unstarted = pending.filter((i) => !started.has(i.id))
    return { reports, killed, unstarted, epics }
  })

/**
 * Where an epic's completion trigger runs: a detached worktree at the integration
 * head (removed afterwards), or the repository itself with `integration.strategy: none`.
 */
const epicWorkspace = (env: RunEnv, epicId: string) =>
  env.integration === null
    ? Effect.succeed(env.config.repo)
    : Effect.acquireRelease(
      env.gitLock(Effect.gen(function*() {
        const head = yield* env.integration!.head
        const path = NodePath.join(env.config.workdir, "worktrees", env.runId, `epic-${safe(epicId)}`)
        yield* git(env.config.repo, "worktree", "remove", "--force", path).pipe(Effect.ignore)
        yield* git(env.config.repo, "worktree", "add", "-q", "--detach", path, head).pipe(Effect.orDie)
        return path
      })),
      (path) =>
        env.config.keepWorktrees
          ? Effect.void
          : env.gitLock(git(env.config.repo, "worktree", "remove", "--force", path)).pipe(Effect.ignore)
    )
