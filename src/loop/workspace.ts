import type { CommandExecutor } from "@effect/platform"
import { Data, Effect } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { capture } from "./supervisor.js"

/** A git operation on the repository or an issue worktree failed. */
export class WorkspaceError extends Data.TaggedError("WorkspaceError")<{
  readonly operation: string
  readonly path: string
  readonly message: string
}> {}

export const git = (cwd: string, ...args: Array<string>) =>
  capture("git", args, cwd).pipe(
    Effect.mapError((e) => new WorkspaceError({ operation: `git ${args[0]}`, path: cwd, message: e.message })),
    Effect.flatMap((r) =>
      r.exitCode === 0
        ? Effect.succeed(r.stdout.trim())
        : Effect.fail(
          new WorkspaceError({ operation: `git ${args.join(" ")}`, path: cwd, message: r.stderr.trim() || `exit ${r.exitCode}` })
        )
    )
  )

export const headSha = (cwd: string) => git(cwd, "rev-parse", "HEAD")

export const isClean = (cwd: string) => Effect.map(git(cwd, "status", "--porcelain"), (out) => out === "")

export const commitsSince = (cwd: string, baseSha: string) =>
  Effect.map(git(cwd, "rev-list", "--count", `${baseSha}..HEAD`), Number)

/** Writes `git diff base..HEAD` to `file` and returns the HEAD it was taken at. */
export const writeDiff = (cwd: string, baseSha: string, file: string) =>
  Effect.gen(function*() {
    const head = yield* headSha(cwd)
    const diff = yield* git(cwd, "diff", `${baseSha}..${head}`)
    yield* Effect.sync(() => NodeFs.writeFileSync(file, diff + "\n"))
    return head
  })

export interface Workspace {
  readonly path: string
  readonly branch: string
  /** Captured before the implementer runs; never changes for the issue. */
  readonly baseSha: string
}

export const safe = (s: string) => s.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^-+|-+$/g, "") || "issue"

/** Whether `ref` names a commit in the repository (no error for a missing one). */
export const refExists = (repo: string, ref: string) =>
  capture("git", ["rev-parse", "--verify", "--quiet", `${ref}^{commit}`], repo).pipe(
    Effect.map((r) => r.exitCode === 0),
    Effect.orElseSucceed(() => false)
  )

/**
 * The branch and path for an issue's worktree. The plain names
 * (`runledger/<run_id>/<issue_id>`, `<root>/<issue_id>`) unless taken — by the
 * interrupted attempt of a resumed run, whose branch and commits are kept — then
 * suffixed with the run's attempt: `-r2`, `-r3`, … (`-r2.2` if even that is taken).
 */
const freshNames = (repo: string, root: string, runId: string, issueId: string, attempt: number) =>
  Effect.gen(function*() {
    const plainBranch = `runledger/${safe(runId)}/${safe(issueId)}`
    const plainPath = NodePath.join(root, safe(issueId))
    for (let n = 0;; n++) {
      const suffix = n === 0 ? "" : n === 1 ? `-r${Math.max(attempt, 2)}` : `-r${Math.max(attempt, 2)}.${n}`
      const branch = plainBranch + suffix
      const path = plainPath + suffix
      if (!(yield* refExists(repo, `refs/heads/${branch}`)) && !NodeFs.existsSync(path)) return { branch, path }
    }
  })

/**
 * A git worktree on a new branch for one issue, removed when the scope closes (the
 * branch and its commits stay). It starts at `base` (the integration head), or at the
 * repository's HEAD when no base is given. `lock` serialises git's worktree
 * bookkeeping (and the integration merges, so `base` is read between two merges).
 */
export const acquireWorkspace = (options: {
  readonly repo: string
  readonly root: string
  readonly runId: string
  readonly issueId: string
  readonly keep: boolean
  readonly lock: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  readonly base?: Effect.Effect<string, WorkspaceError, CommandExecutor.CommandExecutor>
  /** The run's attempt (1, then 2 for its first resume, …): names a retried issue's branch. */
  readonly attempt?: number
}) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      // Without an integration branch the base is the repository's HEAD, read outside the lock.
      const repoHead = options.base === undefined ? yield* headSha(options.repo) : undefined
      return yield* options.lock(Effect.gen(function*() {
        const baseSha = repoHead ?? (yield* options.base!)
        yield* Effect.sync(() => NodeFs.mkdirSync(options.root, { recursive: true }))
        const attempt = options.attempt ?? 1
        // A first attempt tries the plain names at once (one git call under the lock); only
        // when they are taken (a resume, or two ids that read the same once made safe) are
        // free names looked for.
        if (attempt === 1) {
          const branch = `runledger/${safe(options.runId)}/${safe(options.issueId)}`
          const path = NodePath.join(options.root, safe(options.issueId))
          if (!NodeFs.existsSync(path)) {
            const added = yield* Effect.either(git(options.repo, "worktree", "add", "-q", "-b", branch, path, baseSha))
            if (added._tag === "Right") return { path, branch, baseSha } satisfies Workspace
            if (!/already exists/.test(added.left.message)) return yield* Effect.fail(added.left)
          }
        }
        const { branch, path } = yield* freshNames(options.repo, options.root, options.runId, options.issueId, attempt)
        yield* git(options.repo, "worktree", "add", "-q", "-b", branch, path, baseSha)
        const workspace: Workspace = { path, branch, baseSha }
        return workspace
      }))
    }),
    (ws) =>
      options.keep
        ? Effect.void
        : options.lock(git(options.repo, "worktree", "remove", "--force", ws.path)).pipe(Effect.ignore)
  )

export type GitRequirements = CommandExecutor.CommandExecutor
