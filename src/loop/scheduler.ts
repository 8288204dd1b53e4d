import { Deferred, Effect, Exit, Fiber } from "effect"
import type { RunAbortService } from "./abort.js"
import type { Issue } from "./issues.js"
import type { IssueStatus } from "./lifecycle.js"
import { type IssueReport, unstartedReport } from "./report.js"

/**
 * Runs the issues, up to `maxAgents` at once. Each issue first waits for its
 * dependencies: the topological order guarantees that a dependency has started (or
 * finished) before a dependent takes an agent slot; one that did not succeed makes the
 * dependent `skip` instead of `run`. A hard kill interrupts every issue at once
 * (`killed: true`): finished issues keep their reports, unfinished ones are
 * `interrupted, reason=killed`, and those that never started (`unstarted`, for the
 * caller to record) `skipped, reason=killed`.
 */
export const scheduleIssues = <E, R>(options: {
  readonly issues: ReadonlyArray<Issue>
  readonly maxAgents: number
  readonly abort: RunAbortService
  readonly run: (issue: Issue) => Effect.Effect<IssueReport, E, R>
  readonly skip: (issue: Issue, blocked: ReadonlyArray<string>) => Effect.Effect<IssueReport, E, R>
}) =>
  Effect.gen(function*() {
    const { abort, issues } = options
    const done = new Map<string, Deferred.Deferred<IssueStatus>>()
    for (const issue of issues) done.set(issue.id, yield* Deferred.make<IssueStatus>())
    // What a hard kill found: finished issues keep their report, started ones were
    // interrupted (and recorded so by their own finalizer), the rest never started.
    const finished = new Map<string, IssueReport>()
    const started = new Set<string>()
    const runOne = (issue: Issue) =>
      Effect.gen(function*() {
        const blocked: Array<string> = []
        for (const dep of issue.dependsOn) {
          const d = done.get(dep)
          if (d !== undefined && (yield* Deferred.await(d)) !== "success") blocked.push(dep)
        }
        started.add(issue.id)
        const report = blocked.length > 0 ? yield* options.skip(issue, blocked) : yield* options.run(issue)
        finished.set(issue.id, report)
        yield* Deferred.succeed(done.get(issue.id)!, report.status)
        return report
      }).pipe(
        Effect.onExit((exit) => Exit.isSuccess(exit) ? Effect.void : Deferred.succeed(done.get(issue.id)!, "interrupted"))
      )

    const work = yield* Effect.fork(Effect.forEach(issues, runOne, { concurrency: options.maxAgents }))
    // A hard kill interrupts every issue now; their supervisors SIGKILL without grace.
    const killer = yield* Effect.fork(Effect.zipRight(abort.awaitHardKill, Fiber.interrupt(work)))
    const workExit = yield* Fiber.await(work)
    yield* Fiber.interrupt(killer)
    const killed = Exit.isInterrupted(workExit)
    if (Exit.isFailure(workExit) && !killed) return yield* Effect.failCause(workExit.cause)
    if (Exit.isSuccess(workExit)) return { reports: workExit.value, killed, unstarted: [] }
    const reports = issues.map((i) =>
      finished.get(i.id) ?? unstartedReport(i, started.has(i.id) ? "interrupted" : "skipped", "killed")
    )
    return { reports, killed, unstarted: issues.filter((i) => !started.has(i.id)) }
  })
