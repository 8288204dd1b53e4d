/**
 * The run's integration branch: every issue that succeeds is merged into it, one at a
 * time, in a worktree of its own (the user's checkout is never touched). Issues that
 * start later branch from its head, and run_end runs in its worktree.
 */
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import { Effect, Ref } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import type { IntegrationStrategy } from "./config.js"
import type { LoopRecorderService } from "../services/loop-recorder.js"
import type { StageTrail } from "./stage-trail.js"
import { capture } from "./supervisor.js"
import { git, headSha, safe } from "./workspace.js"

/** One issue's integration, as stored in its report and in the `integration` stage row. */
export interface IntegrationOutcome {
  readonly status: "merged" | "conflict" | "failed"
  readonly strategy: "merge" | "rebase"
  readonly branch: string
  readonly issue_branch: string
  /** The integration head after the merge (null when it did not merge). */
  readonly sha: string | null
  /** The integration head before the merge. */
  readonly previous_sha: string
  /** `fast_forward`, `merge_commit`, `up_to_date` (nothing new), or null. */
  readonly mode: "fast_forward" | "merge_commit" | "up_to_date" | null
  /** The paths git could not merge (status `conflict`). */
  readonly conflicts: ReadonlyArray<string>
  /** What git said when the merge failed for another reason. */
  readonly message: string | null
}

export interface Integration {
  readonly strategy: "merge" | "rebase"
  readonly branch: string
  /** The integration branch's own worktree. */
  readonly worktree: string
  /** The repository HEAD the run started from. */
  readonly baseSha: string
  /** The integration branch's head now. */
  readonly head: Effect.Effect<string>
  /**
   * Merges an issue branch (rebased first with the `rebase` strategy, in the issue's
   * worktree). A failed merge is aborted, leaving the integration branch as it was.
   * Takes the git lock itself; uninterruptible, so that a Ctrl-C never leaves a
   * half-done merge.
   */
  readonly integrate: (
    issue: { readonly branch: string; readonly worktree: string }
  ) => Effect.Effect<IntegrationOutcome, never, CommandExecutor.CommandExecutor>
  /** Re-reads the head after others (run_end's fixer) may have committed on the branch. */
  readonly refresh: Effect.Effect<string, never, CommandExecutor.CommandExecutor>
}

/** The integration branch's name for a run: the configured one (`{run_id}` replaced) or `runledger/<run_id>/integration`. */
export const integrationBranchName = (configured: string | undefined, runId: string) =>
  configured === undefined ? `runledger/${safe(runId)}/integration` : configured.replaceAll("{run_id}", safe(runId))

const run = (cwd: string, ...args: Array<string>) =>
  capture("git", args, cwd).pipe(
    Effect.orElseSucceed(() => ({ exitCode: -1, stdout: "", stderr: `git ${args[0]} could not start` }))
  )

const unmergedPaths = (cwd: string) =>
  Effect.map(run(cwd, "diff", "--name-only", "--diff-filter=U"), (r) => r.stdout.split("\n").map((l) => l.trim()).filter((l) => l !== ""))

/**
 * Creates the integration branch at `baseSha` (or, for a resume, takes the existing
 * one over) and checks it out in a fresh worktree beside the run's issue worktrees.
 * The worktree is removed when the scope closes (unless `keep`); the branch stays.
 */
export const acquireIntegration = (options: {
  readonly repo: string
  /** `<workdir>/worktrees`: the worktree is `<root>/<run_id>.integration`. */
  readonly root: string
  readonly runId: string
  readonly branch: string
  readonly strategy: Exclude<IntegrationStrategy, "none">
  readonly baseSha: string
  readonly keep: boolean
  /** A resumed run: the branch exists already, a stale worktree of it may be left over. */
  readonly resume: boolean
  readonly lock: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}) =>
  Effect.acquireRelease(
    options.lock(Effect.gen(function*() {
      const { branch, repo } = options
      const path = NodePath.join(options.root, `${safe(options.runId)}.integration`)
      if (options.resume) {
        // A crashed attempt may have left its worktree (even mid-merge): start clean.
        yield* run(repo, "worktree", "remove", "--force", path)
        yield* Effect.sync(() => NodeFs.rmSync(path, { recursive: true, force: true }))
        yield* run(repo, "worktree", "prune")
        yield* git(repo, "rev-parse", "--verify", `refs/heads/${branch}`)
      } else {
        yield* git(repo, "branch", branch, options.baseSha)
      }
      yield* Effect.sync(() => NodeFs.mkdirSync(options.root, { recursive: true }))
      yield* git(repo, "worktree", "add", "-q", path, branch)
      const head = yield* Ref.make(yield* headSha(path))
      return makeIntegration(options, path, head)
    })),
    (integration) =>
      options.keep
        ? Effect.void
        : options.lock(git(options.repo, "worktree", "remove", "--force", integration.worktree)).pipe(Effect.ignore)
  )

const makeIntegration = (
  options: Parameters<typeof acquireIntegration>[0],
  worktree: string,
  head: Ref.Ref<string>
): Integration => {
  const { branch, strategy } = options
  const readHead = Effect.flatMap(
    headSha(worktree).pipe(Effect.catchAll(() => Ref.get(head))),
    (sha) => Effect.as(Ref.set(head, sha), sha)
  )

  const mergeInto = (issueBranch: string, previous: string, ffOnly: boolean) =>
    Effect.gen(function*() {
      const issueHead = (yield* run(worktree, "rev-parse", issueBranch)).stdout.trim()
      const args = ffOnly
        ? ["merge", "--ff-only", issueBranch]
        : ["merge", "--no-edit", "-m", `Integrate ${issueBranch}`, issueBranch]
      const r = yield* run(worktree, ...args)
      if (r.exitCode === 0) {
        const sha = yield* readHead
        const mode = sha === previous ? "up_to_date" as const : sha === issueHead ? "fast_forward" as const : "merge_commit" as const
        return { sha, mode, conflicts: [] as Array<string>, message: null }
      }
      const conflicts = yield* unmergedPaths(worktree)
      yield* run(worktree, "merge", "--abort")
      yield* run(worktree, "reset", "-q", "--hard", previous)
      yield* Ref.set(head, previous)
      return { sha: null, mode: null, conflicts, message: (r.stderr.trim() || r.stdout.trim()).slice(-2000) }
    })

  const integrate: Integration["integrate"] = (issue) =>
    options.lock(Effect.gen(function*() {
      const previous = yield* Ref.get(head)
      const base = { strategy, branch, issue_branch: issue.branch, previous_sha: previous }
      if (strategy === "rebase") {
        const rebased = yield* run(issue.worktree, "rebase", previous)
        if (rebased.exitCode !== 0) {
          const conflicts = yield* unmergedPaths(issue.worktree)
          yield* run(issue.worktree, "rebase", "--abort")
          const outcome: IntegrationOutcome = {
            ...base,
            status: conflicts.length > 0 ? "conflict" : "failed",
            sha: null,
            mode: null,
            conflicts,
            message: (rebased.stderr.trim() || rebased.stdout.trim()).slice(-2000)
          }
          return outcome
        }
      }
      const merged = yield* mergeInto(issue.branch, previous, strategy === "rebase")
      const outcome: IntegrationOutcome = {
        ...base,
        ...merged,
        status: merged.sha !== null ? "merged" : merged.conflicts.length > 0 ? "conflict" : "failed"
      }
      return outcome
    })).pipe(Effect.uninterruptible)

  return { strategy, branch, worktree, baseSha: options.baseSha, head: Ref.get(head), integrate, refresh: readHead }
}

/** The `[integration] …` event line of an outcome. */
export const integrationEvent = (issueId: string, outcome: IntegrationOutcome): string =>
  outcome.status === "merged"
    ? `[integration] merged: issue_id=${issueId}, sha=${outcome.sha}, mode=${outcome.mode}`
    : outcome.status === "conflict"
    ? `[integration] conflict: issue_id=${issueId}, paths=${outcome.conflicts.join(",")}`
    : `[integration] failed: issue_id=${issueId}, reason=${(outcome.message ?? "").split("\n")[0]}`

const REASONS = { conflict: "integration_conflict", failed: "integration_failed" } as const

/** The issue reason of an integration that did not merge. */
export const integrationFailureReason = (outcome: IntegrationOutcome): string | null =>
  outcome.status === "merged" ? null : REASONS[outcome.status]

/**
 * An issue's `integration` stage: the merge, recorded as a stage row (pass/fail, the
 * outcome as its result), announced as an event line, and the new head recorded.
 */
export const runIntegrationStage = (options: {
  readonly integration: Integration
  readonly stages: StageTrail
  readonly recorder: LoopRecorderService
  readonly emit: (line: string) => Effect.Effect<void>
  readonly runId: string
  readonly issueId: string
  readonly workspace: { readonly branch: string; readonly path: string }
}) =>
  Effect.gen(function*() {
    const { issueId, workspace } = options
    const outcome = yield* options.stages.run(
      "integration",
      1,
      options.integration.integrate({ branch: workspace.branch, worktree: workspace.path }),
      (o) => ({ status: o.status === "merged" ? "pass" : "fail", reason: integrationFailureReason(o), result: o })
    )
    if (outcome.sha !== null) yield* options.recorder.recordIntegration(options.runId, issueId, outcome.sha)
    yield* options.emit(integrationEvent(issueId, outcome))
    return outcome
  })
