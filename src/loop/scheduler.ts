import { Deferred, Effect, Exit, Fiber } from "effect"
import type { RunAbortService } from "./abort.js"
import type { Issue } from "./issues.js"
import type { IssueStatus } from "./lifecycle.js"
import { type IssueReport, unstartedReport } from "./report.js"

/**
 * Runs the issues, up to `maxAgents` at once. Each issue first waits for its
 * dependencies: the topological order guarantees that a dependency has started (or
 * finished) before a dependent takes an agent slot; one that did not succeed makes the
 * dependent `skip` instead of `run`. A hard kill interrupts every issue at once; the
 * run then reports every issue `interrupted, reason=killed` (`killed: true`).
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
    const runOne = (issue: Issue) =>
      Effect.gen(function*() {
        const blocked: Array<string> = []
        for (const dep of issue.dependsOn) {
          const d = done.get(dep)
          if (d !== undefined && (yield* Deferred.await(d)) !== "success") blocked.push(dep)
        }
        const report = blocked.length > 0 ? yield* options.skip(issue, blocked) : yield* options.run(issue)
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
    const reports: ReadonlyArray<IssueReport> = Exit.isSuccess(workExit)
      ? workExit.value
      : issues.map((i) => unstartedReport(i, "interrupted", "killed"))
    return { reports, killed }
  })
