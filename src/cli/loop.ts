import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Effect, Option } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { makeRunAbort, RunAbort, type RunAbortService } from "../loop/abort.js"
import { type LoopConfig, loadLoopConfig } from "../loop/config.js"
import { runLoop, type RunLoopOptions } from "../loop/coordinator.js"
import { git } from "../loop/workspace.js"
import type { LoopRunResult } from "../loop/report.js"
import { dbOption, dbUrl, jsonOption, printHuman, printJson, printNote, table } from "./common.js"
import { exitOnError, loopStatusExit, usageError } from "./exit.js"
import { useRunHeap } from "./heap.js"
import { loopRun } from "./layers.js"
import { loopLogsCommand, loopStatusCommand } from "./loop-status.js"
import { claimSigint } from "./signals.js"

const configOption = Options.file("config").pipe(
  Options.withAlias("c"),
  Options.withDescription(
    "Loop config file (YAML): implementer, commands, gate, validation_triggers, fixer, reviewer. " +
      "Required to run a loop; not given to the status and logs subcommands"
  ),
  Options.optional
)
const issuesOption = Options.file("issues").pipe(
  Options.withDescription(
    "Issues file, overriding the config: a YAML/JSON list of {id, title, body, priority, depends_on}, " +
      "or a beads issues.jsonl (detected by the .jsonl extension)"
  ),
  Options.optional
)
const repoOption = Options.directory("repo").pipe(
  Options.withDescription("Git repository the issues are worked in (overrides `repo`); each issue gets its own worktree"),
  Options.optional
)
const resumeOption = Options.text("resume").pipe(
  Options.withDescription(
    "Resume a loop run that is not running (interrupted, crashed, failed): finished issues keep their records, " +
      "the others start again from the integration head, then run_end runs"
  ),
  Options.optional
)
const maxAgentsOption = Options.integer("max-agents").pipe(
  Options.withDescription("How many issues run at once (overrides `max_agents`)"),
  Options.optional
)
const maxIssuesOption = Options.integer("max-issues").pipe(
  Options.withDescription(
    "Work at most N issues in this run: from an issues file the first N in scheduling order (dependencies " +
      "first), with live beads the first N claimed. Example: --max-issues 3"
  ),
  Options.optional
)
const allowDirtyOption = Options.boolean("allow-dirty").pipe(
  Options.withDescription(
    "Run even though the repository has uncommitted changes to tracked files (a warning on stderr). " +
      "Issue worktrees start from the committed HEAD, so such changes are not part of the run"
  )
)

/** How many dirty paths the refusal names. */
const DIRTY_PATHS_SHOWN = 5

/**
 * Before anything is created: the repository exists and is a git repository (else exit
 * 2 naming it), and has no uncommitted changes to tracked files — refused (exit 2, the
 * first paths named) unless `allowDirty`, then a warning. Untracked files do not count:
 * the Landscape, the run folder and an uncommitted loop config usually are.
 */
export const checkRepository = (repo: string, allowDirty: boolean) =>
  Effect.gen(function*() {
    if (!NodeFs.existsSync(repo)) return yield* Effect.fail(usageError(`repo ${repo} does not exist`))
    if (!NodeFs.statSync(repo).isDirectory()) return yield* Effect.fail(usageError(`repo ${repo} is not a directory`))
    const inside = yield* git(repo, "rev-parse", "--is-inside-work-tree").pipe(Effect.orElseSucceed(() => "false"))
    if (inside !== "true") {
      return yield* Effect.fail(
        usageError(`repo ${repo} is not a git repository (set \`repo\` in the loop config or give --repo)`)
      )
    }
    const status = yield* git(repo, "status", "--porcelain", "--untracked-files=no").pipe(
      Effect.mapError((e) => usageError(`repo ${repo}: cannot read git status: ${e.message}`))
    )
    // `XY path` lines (the first one's leading space is trimmed away by `git`).
    const paths = status.split("\n").filter((l) => l.trim() !== "").map((l) => /^[ A-Z?!]{1,2} (.*)$/.exec(l)?.[1] ?? l)
    if (paths.length === 0) return
    const shown = paths.slice(0, DIRTY_PATHS_SHOWN).join(", ") +
      (paths.length > DIRTY_PATHS_SHOWN ? ` and ${paths.length - DIRTY_PATHS_SHOWN} more` : "")
    if (!allowDirty) {
      return yield* Effect.fail(usageError(
        `repo ${repo} has uncommitted changes (${shown}); issue worktrees start from the committed HEAD and would ` +
          "not see them: commit or stash them, or pass --allow-dirty to run anyway"
      ))
    }
    yield* printNote(`warning: repo ${repo} has uncommitted changes (${shown}); the run starts from the committed HEAD without them`)
  })

/** Applies the command-line overrides; relative paths resolve against the working directory. */
export const applyOverrides = (
  config: LoopConfig,
  overrides: {
    readonly issues: Option.Option<string>
    readonly repo: Option.Option<string>
    readonly maxAgents: Option.Option<number>
  }
): LoopConfig => ({
  ...config,
  issues: Option.match(overrides.issues, {
    onNone: () => config.issues,
    onSome: (file) => ({ kind: file.endsWith(".jsonl") ? "beads" as const : "file" as const, path: NodePath.resolve(file) })
  }),
  repo: Option.match(overrides.repo, { onNone: () => config.repo, onSome: (dir) => NodePath.resolve(dir) }),
  maxAgents: Option.getOrElse(overrides.maxAgents, () => config.maxAgents)
})

/** The `--json` document. */
export const loopJson = (result: LoopRunResult) => ({
  run_id: result.run_id,
  status: result.status,
  reason: result.reason,
  counts: result.counts,
  issues: result.issues.map((issue) => ({
    issue_id: issue.issue_id,
    status: issue.status,
    reason: issue.reason,
    branch: issue.branch,
    base_sha: issue.base_sha,
    head_sha: issue.head_sha,
    gate_attempts: issue.gate_attempts,
    session_end: issue.session_end === null ? null : {
      status: issue.session_end.status,
      reason: issue.session_end.reason,
      commands: issue.session_end.commands.map((c) => ({
        ref: c.ref,
        passed: c.passed,
        exit_code: c.exit_code,
        duration_ms: c.duration_ms
      }))
    },
    review: issue.review === null ? null : {
      status: issue.review.status,
      verdict: issue.review.verdict,
      findings: issue.review.findings.length,
      blocking: issue.review.blocking.length
    },
    integration: issue.integration === undefined || issue.integration === null ? null : {
      status: issue.integration.status,
      sha: issue.integration.sha,
      mode: issue.integration.mode,
      conflicts: issue.integration.conflicts
    }
  })),
  run_end: { status: result.run_end.status, reason: result.run_end.reason },
  integration: result.integration,
  attempt: result.attempt,
  epics: result.epics.map((epic) => ({
    epic_id: epic.epic_id,
    status: epic.status,
    reason: epic.reason,
    commands: epic.commands.map((c) => ({ ref: c.ref, passed: c.passed, exit_code: c.exit_code, duration_ms: c.duration_ms }))
  }))
})

const summary = (result: LoopRunResult) =>
  [
    table(
      ["issue", "status", "reason", "gate", "session_end", "review"],
      result.issues.map((i) => [
        i.issue_id,
        i.status,
        i.reason ?? "",
        String(i.gate_attempts),
        i.session_end === null ? "" : `${i.session_end.status}${i.session_end.reason === null ? "" : ` (${i.session_end.reason})`}`,
        i.review?.status ?? ""
      ])
    ),
    `run_end: ${result.run_end.status}${result.run_end.reason === null ? "" : ` (${result.run_end.reason})`}`,
    result.integration.branch === null
      ? `integration: none`
      : `integration: ${result.integration.branch} (${result.integration.strategy}) at ${result.integration.head ?? "?"}`,
    ...result.epics.map((e) => `epic ${e.epic_id}: ${e.status}${e.reason === null ? "" : ` (${e.reason})`}`),
    ...(result.attempt > 1 ? [`attempt: ${result.attempt} (resumed)`] : []),
    `loop ${result.run_id}: ${result.status}${result.reason === null ? "" : ` (${result.reason})`} — ` +
    `${result.counts.success}/${result.counts.total} succeeded; logs in ${result.run_dir}`
  ].join("\n")

/** While the loop runs it owns SIGINT: the first drains, the second kills now. */
const claimSigintFor = (abort: RunAbortService) =>
  Effect.acquireRelease(
    Effect.sync(() =>
      claimSigint((count) => {
        if (count <= 1) {
          process.stderr.write("interrupt: draining (running commands finish; Ctrl-C again kills them now)\n")
          Effect.runFork(abort.request("sigint"))
        } else {
          Effect.runFork(abort.requestHardKill)
        }
      })
    ),
    (release) => Effect.sync(release)
  )

export const loopCommand = Command.make(
  "loop",
  {
    config: configOption,
    issues: issuesOption,
    repo: repoOption,
    maxAgents: maxAgentsOption,
    maxIssues: maxIssuesOption,
    resume: resumeOption,
    allowDirty: allowDirtyOption,
    db: dbOption,
    json: jsonOption
  },
  (args) =>
    Effect.gen(function*() {
      if (Option.isNone(args.config)) {
        return yield* Effect.fail(usageError(
          "loop needs --config (-c) FILE to run a loop; `runledger loop status` and `runledger loop logs ISSUE` read recorded runs"
        ))
      }
      const loaded = yield* loadLoopConfig(args.config.value)
      if (Option.isSome(args.maxAgents) && args.maxAgents.value < 1) {
        return yield* Effect.fail(usageError("--max-agents must be at least 1"))
      }
      if (Option.isSome(args.maxIssues) && args.maxIssues.value < 1) {
        return yield* Effect.fail(usageError(`--max-issues must be at least 1 (got ${args.maxIssues.value})`))
      }
      const config = applyOverrides(loaded, args)
      yield* checkRepository(config.repo, args.allowDirty)
      const abort = yield* makeRunAbort
      yield* claimSigintFor(abort)
      const options: RunLoopOptions = {
        ...Option.match(args.resume, { onNone: () => ({}), onSome: (resume) => ({ resume }) }),
        ...Option.match(args.maxIssues, { onNone: () => ({}), onSome: (maxIssues) => ({ maxIssues }) })
      }
      yield* useRunHeap
      const result = yield* runLoop(config, options).pipe(
        Effect.provideService(RunAbort, abort),
        Effect.provide(loopRun(config, dbUrl(args.db))),
        Effect.catchTag("LoopResumeError", (e) => Effect.fail(usageError(`cannot resume: ${e.message}`)))
      )
      if (args.json) yield* printJson(loopJson(result))
      else yield* printHuman(summary(result))
      yield* loopStatusExit(result.status)
    }).pipe(Effect.scoped, exitOnError)
).pipe(
  Command.withDescription(
    "Run an issue loop: each issue goes implementer → gate (retries with feedback) → session_end " +
      "(validation, remediation through the fixer) → review → finalize in its own git worktree, then one " +
      "run_end stage. Every actor is a shell command; every result is recorded in the Landscape. " +
      "Exit 0 when some issue succeeded, 1 when none did (or run_end failed), 2 for an invalid config, " +
      "130 on Ctrl-C (the first drains, the second kills). A repository with uncommitted changes to tracked files " +
      "is refused unless --allow-dirty. --resume RUN_ID continues a run that stopped; --max-issues N caps the run. " +
      "With `issues: {source: beads}` the work comes from the beads tracker (`bd ready`), claimed and closed as " +
      "the run goes. Subcommands: status (a " +
      "recorded run's issues and stages), logs (an issue's command output)."
  ),
  Command.withSubcommands([loopStatusCommand, loopLogsCommand])
)
