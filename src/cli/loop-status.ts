/**
 * `runledger loop status` and `runledger loop logs`: read a loop run back from the
 * Landscape — its issues, every stage row with its attempt and duration, and the
 * commands' output (from the log files, or the recorded tail when a file is gone).
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Effect, Option } from "effect"
import * as NodeFs from "node:fs"
import {
  type LoopCommandRow,
  type LoopIssueRow,
  type LoopRunRow,
  readLoopCommands,
  readLoopIssues,
  readLoopRun,
  readLoopRunIds
} from "../landscape/loop-recorder.js"
import { listLoopStages } from "../services/loop-recorder.js"
import type { LoopStageSummary } from "../services/loop-records.js"
import { dbOption, dbUrl, jsonOption, printHuman, printJson, requireLandscape, table } from "./common.js"
import { exitOnError, usageError } from "./exit.js"
import { landscapeRead } from "./layers.js"

const runOption = Options.text("run").pipe(
  Options.withDescription("The loop run to show: a run id, or `latest` (the default) for the newest loop run"),
  Options.withDefault("latest")
)

/** `0.42s`, `12.3s`, `4m 05s`; empty when the stage has not ended. */
export const formatDuration = (ms: number | null): string => {
  if (ms === null || !Number.isFinite(ms)) return ""
  if (ms < 10_000) return `${(ms / 1000).toFixed(2)}s`
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`
  const minutes = Math.floor(ms / 60_000)
  return `${minutes}m ${String(Math.round((ms % 60_000) / 1000)).padStart(2, "0")}s`
}

const elapsed = (from: string | null, to: string | null): number | null =>
  from === null || to === null ? null : Date.parse(to) - Date.parse(from)

const statusText = (status: string, reason: string | null) => (reason === null ? status : `${status} (${reason})`)

/** The run a command asks for, or exit 2 naming the recorded ones. */
const resolveRun = (runId: string, url: string) =>
  Effect.gen(function*() {
    const run = yield* readLoopRun(runId)
    if (run !== undefined) return run
    const ids = yield* readLoopRunIds
    return yield* Effect.fail(usageError(
      ids.length === 0
        ? `no loop run in ${url}`
        : `no loop run ${runId} in ${url}; loop runs (newest first): ${ids.slice(0, 10).join(", ")}${
          ids.length > 10 ? ` and ${ids.length - 10} more` : ""
        }`
    ))
  })

/** Columns of `loop_issues` the status shows in its own words; any other column is shown as `key: value`. */
const KNOWN_ISSUE_COLUMNS = new Set([
  "issue_id",
  "title",
  "priority",
  "status",
  "reason",
  "branch",
  "worktree",
  "base_sha",
  "head_sha",
  "gate_attempts",
  "review_rounds",
  "started_at",
  "completed_at"
])

const extraColumns = (issue: LoopIssueRow): Array<[string, string]> =>
  Object.entries(issue)
    .filter(([k, v]) => !KNOWN_ISSUE_COLUMNS.has(k) && v !== null && v !== undefined && v !== "")
    .map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)])

const stageTable = (stages: ReadonlyArray<LoopStageSummary>) =>
  table(
    ["STAGE", "ATTEMPT", "STATUS", "DURATION"],
    stages.map((s) => [
      s.stage,
      String(s.attempt),
      statusText(s.status, s.reason),
      formatDuration(elapsed(s.started_at, s.completed_at))
    ])
  ).split("\n").map((line) => `    ${line}`).join("\n")

const short = (sha: string | null) => (sha === null ? "" : sha.slice(0, 12))

/** Stage rows of ids that are not issues of the run (live beads: epics, failed claims), by id in first-seen order. */
const outsideStages = (issues: ReadonlyArray<LoopIssueRow>, stages: ReadonlyArray<LoopStageSummary>) => {
  const known = new Set(issues.map((i) => i.issue_id))
  const byId = new Map<string, Array<LoopStageSummary>>()
  for (const s of stages) {
    if (s.issue_id === null || known.has(s.issue_id)) continue
    byId.set(s.issue_id, [...(byId.get(s.issue_id) ?? []), s])
  }
  return byId
}

export const renderStatus = (
  run: LoopRunRow,
  issues: ReadonlyArray<LoopIssueRow>,
  stages: ReadonlyArray<LoopStageSummary>
): string => {
  const lines: Array<string> = [
    `loop ${run.run_id}: ${statusText(run.status, run.reason)} — ${run.counts.success}/${run.counts.total} succeeded` +
    `, started ${run.started_at}${
      run.completed_at === null ? ", still running" : `, took ${formatDuration(elapsed(run.started_at, run.completed_at))}`
    }`,
    `repo ${run.repo}`,
    `run folder ${run.run_dir}`,
    "",
    table(
      ["ISSUE", "STATUS", "GATE", "REVIEW", "DURATION", "TITLE"],
      issues.map((i) => [
        i.issue_id,
        statusText(i.status, i.reason),
        String(i.gate_attempts),
        String(i.review_rounds),
        formatDuration(elapsed(i.started_at, i.completed_at)),
        i.title
      ])
    )
  ]
  for (const issue of issues) {
    const own = stages.filter((s) => s.issue_id === issue.issue_id)
    lines.push("", `${issue.issue_id}: ${statusText(issue.status, issue.reason)}`)
    if (issue.branch !== null) {
      lines.push(`  branch ${issue.branch} (${short(issue.base_sha)}..${short(issue.head_sha)})`)
    }
    for (const [k, v] of extraColumns(issue)) lines.push(`  ${k}: ${v}`)
    if (own.length > 0) lines.push(stageTable(own))
  }
  // Live beads: the epics the run completed and the issues it could not claim have stage rows but no issue row.
  for (const [id, own] of outsideStages(issues, stages)) {
    const epic = own.some((s) => s.stage === "epic_completion") || own.every((s) => s.stage === "close")
    lines.push("", `${id}: ${epic ? "epic" : "not worked (claim failed)"}`, stageTable(own))
  }
  const runStages = stages.filter((s) => s.issue_id === null)
  lines.push(
    "",
    `run_end: ${run.run_end_status === null ? "not run" : statusText(run.run_end_status, run.run_end_reason)}`
  )
  if (runStages.length > 0) lines.push(stageTable(runStages))
  return lines.join("\n")
}

const statusJson = (
  run: LoopRunRow,
  issues: ReadonlyArray<LoopIssueRow>,
  stages: ReadonlyArray<LoopStageSummary>
) => {
  const stageJson = (s: LoopStageSummary) => ({
    stage: s.stage,
    attempt: s.attempt,
    status: s.status,
    reason: s.reason,
    started_at: s.started_at,
    completed_at: s.completed_at,
    duration_ms: elapsed(s.started_at, s.completed_at)
  })
  return {
    ...run,
    duration_ms: elapsed(run.started_at, run.completed_at),
    issues: issues.map((i) => ({
      ...i,
      duration_ms: elapsed(i.started_at, i.completed_at),
      stages: stages.filter((s) => s.issue_id === i.issue_id).map(stageJson)
    })),
    run_stages: stages.filter((s) => s.issue_id === null).map(stageJson),
    other_stages: [...outsideStages(issues, stages)].map(([id, own]) => ({ id, stages: own.map(stageJson) }))
  }
}

/** `runledger loop status`. */
export const loopStatusCommand = Command.make(
  "status",
  { db: dbOption, run: runOption, json: jsonOption },
  (args) => {
    const url = dbUrl(args.db)
    return Effect.gen(function*() {
      yield* requireLandscape(url, " (give --db with the Landscape the loop ran with)")
      yield* Effect.gen(function*() {
        const run = yield* resolveRun(args.run, url)
        const issues = yield* readLoopIssues(run.run_id)
        const stages = yield* listLoopStages(run.run_id)
        if (args.json) yield* printJson(statusJson(run, issues, stages))
        else yield* printHuman(renderStatus(run, issues, stages))
      }).pipe(Effect.provide(landscapeRead(url)))
    }).pipe(exitOnError)
  }
).pipe(
  Command.withDescription(
    "Show a recorded loop run: its status and counts, each issue with its stages (attempt, status, reason, " +
      "duration) and the run_end. --run picks the run (default: the newest loop run). Exit 2 when the Landscape " +
      "or the run does not exist."
  )
)

const issueArg = Args.text({ name: "ISSUE" }).pipe(
  Args.withDescription("The issue id; `run_end` for the run's own stage (unless an issue has that id)")
)

const stageOption = Options.text("stage").pipe(
  Options.withDescription("Only the commands of this stage (implementer, gate, session_end, review, fixer, finalize, run_end...)"),
  Options.optional
)

/** The output of one command: its log file, or the recorded tail when the file is gone. */
const readOutput = (c: LoopCommandRow): { readonly source: string; readonly text: string } => {
  if (c.log_file !== null) {
    try {
      return { source: `log ${c.log_file}`, text: NodeFs.readFileSync(c.log_file, "utf8") }
    } catch {
      return {
        source: `log ${c.log_file} is gone; the output tail recorded in the Landscape follows`,
        text: c.output_tail
      }
    }
  }
  return { source: "no log file; the output tail recorded in the Landscape follows", text: c.output_tail }
}

const commandOutput = (c: LoopCommandRow) => Effect.sync(() => readOutput(c))

const outcomeText = (c: LoopCommandRow) =>
  c.timed_out ? "timed out" : c.exit_code === null ? "killed by a signal" : `exit ${c.exit_code}`

/** `runledger loop logs`. */
export const loopLogsCommand = Command.make(
  "logs",
  { issue: issueArg, db: dbOption, run: runOption, stage: stageOption, json: jsonOption },
  (args) => {
    const url = dbUrl(args.db)
    return Effect.gen(function*() {
      yield* requireLandscape(url, " (give --db with the Landscape the loop ran with)")
      yield* Effect.gen(function*() {
        const run = yield* resolveRun(args.run, url)
        const issues = yield* readLoopIssues(run.run_id)
        // Live beads: an epic's completion trigger ran commands under the epic's id, which is not an issue of the run.
        const isIssue = issues.some((i) => i.issue_id === args.issue) ||
          (args.issue !== "run_end" && (yield* listLoopStages(run.run_id)).some((s) => s.issue_id === args.issue))
        if (!isIssue && args.issue !== "run_end") {
          return yield* Effect.fail(usageError(
            `run ${run.run_id} has no issue ${args.issue}; its issues: ${issues.map((i) => i.issue_id).join(", ") || "(none)"}` +
              " (or run_end for the run's own stage)"
          ))
        }
        const all = yield* readLoopCommands(run.run_id, isIssue ? args.issue : null)
        const commands = Option.match(args.stage, { onNone: () => all, onSome: (s) => all.filter((c) => c.stage === s) })
        if (Option.isSome(args.stage) && commands.length === 0) {
          const stages = [...new Set(all.map((c) => c.stage))]
          return yield* Effect.fail(usageError(
            `${args.issue} ran no command in stage ${args.stage.value} of run ${run.run_id}; ` +
              `stages with commands: ${stages.join(", ") || "(none)"}`
          ))
        }
        if (args.json) {
          const docs = yield* Effect.forEach(commands, (c) =>
            Effect.map(commandOutput(c), (output) => ({ ...c, output_source: output.source, output: output.text })))
          return yield* printJson(docs)
        }
        if (commands.length === 0) return yield* printHuman(`${args.issue}: no command recorded in run ${run.run_id}`)
        const blocks = yield* Effect.forEach(commands, (c) =>
          Effect.map(commandOutput(c), (output) => {
            const head = `== ${c.stage}${c.attempt === null ? "" : ` #${c.attempt}`} ${c.ref}: ${outcomeText(c)}` +
              `${c.passed ? "" : " (failed)"}, ${formatDuration(c.duration_ms)}`
            const body = output.text.endsWith("\n") || output.text === "" ? output.text : output.text + "\n"
            return `${head}\n$ ${c.command}\n(${output.source})\n${body}`
          }))
        yield* printHuman(blocks.join("\n"))
      }).pipe(Effect.provide(landscapeRead(url)))
    }).pipe(exitOnError)
  }
).pipe(
  Command.withDescription(
    "Print the output of every command an issue ran in a recorded loop run, in order, each headed by its stage, " +
      "attempt, ref, exit code and duration: read from its log file in the run folder, or the output tail recorded " +
      "in the Landscape when the file is gone (the header says which). --stage keeps one stage."
  )
)
