import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Effect, Option } from "effect"
import { checkExportSigningKey } from "../pipeline/orchestrator/export.js"
import { prepareResume, type ResumePreview, resumeRun } from "../pipeline/resume.js"
import { count, DEFAULT_DB, dbUrl, printHuman, printJson, printNote, requireLandscape, table } from "./common.js"
import { exitOnError, usageError } from "./exit.js"
import { pipelineRun, pipelineTelemetry } from "./layers.js"
import { loadPlan, quietOption, runAndReport, settingsOption } from "./run.js"

const runArg = Args.text({ name: "RUN_ID" }).pipe(
  Args.withDescription("The run to continue, or `latest` for the most recently started run")
)
const databaseOption = Options.text("db").pipe(
  Options.withAlias("database"),
  Options.withAlias("d"),
  Options.withDescription(
    "Landscape URL the run is recorded in (sqlite:///relative.db, sqlite:////absolute.db or a plain path); " +
      "--database and -d are ELSPETH's spellings. Default: landscape.url of the settings, else sqlite:///./runledger.db"
  ),
  Options.optional
)
const dryRunOption = Options.boolean("dry-run").pipe(
  Options.withDescription("Print what the resume would do (checkpoint, rows done and left, sinks to be cut back) and change nothing")
)
const executeOption = Options.boolean("execute").pipe(
  Options.withAlias("x"),
  Options.withDescription("Accepted for ELSPETH compatibility: runledger resumes unless --dry-run is given")
)
const jsonFlag = Options.boolean("json").pipe(Options.withDescription("Print one JSON document on stdout and nothing else there"))
const formatOption = Options.choice("format", ["text", "json"]).pipe(
  Options.withDescription("ELSPETH's spelling: --format json is --json"),
  Options.optional
)

const previewText = (p: ResumePreview): string =>
  [
    `run ${p.run_id} (${p.status}${p.status_reason === null ? "" : `, ${p.status_reason}`}) can be resumed as attempt ${p.next_attempt}`,
    `checkpoint ${p.checkpoint.sequence} of ${p.checkpoint.created_at}: ${count(p.rows_done, "row")} done, ${count(p.rows_left, "row")} left`,
    `restored: ${p.open_batches} open aggregation batch(es) holding ${p.buffered_tokens} token(s), ${p.pending_coalesce_tokens} token(s) waiting at coalesces`,
    "",
    p.sinks.length === 0
      ? "no sink output to cut back"
      : table(
        ["SINK", "PATH", "NOW", "CUT TO", "ROWS KEPT"],
        p.sinks.map((s) => [
          s.sink,
          s.path ?? "-",
          s.current_bytes === null ? "-" : `${s.current_bytes} B`,
          `${s.committed_bytes} B`,
          String(s.committed_rows)
        ])
      ),
    "",
    table(
      ["ATTEMPT", "KIND", "STATUS", "STARTED", "ENDED", "PID", "REASON"],
      p.attempts.map((a) => [
        String(a.attempt),
        a.kind,
        a.status,
        a.started_at,
        a.ended_at ?? "-",
        a.owner_pid === null ? "-" : String(a.owner_pid),
        a.reason ?? ""
      ])
    )
  ].join("\n")

export const resumeCommand = Command.make(
  "resume",
  {
    run: runArg,
    settings: settingsOption,
    db: databaseOption,
    dryRun: dryRunOption,
    execute: executeOption,
    json: jsonFlag,
    format: formatOption,
    quiet: quietOption
  },
  (args) =>
    Effect.gen(function*() {
      const json = args.json || Option.getOrUndefined(args.format) === "json"
      if (args.dryRun && args.execute) return yield* Effect.fail(usageError("--dry-run and --execute contradict each other; give one"))
      const plan = yield* loadPlan(args.settings, args.db)
      const keyProblem = checkExportSigningKey(plan, process.env)
      if (keyProblem !== undefined) return yield* Effect.fail(keyProblem)
      const url = dbUrl(args.db, plan.settings.landscape?.url ?? DEFAULT_DB)
      const quiet = args.quiet || args.dryRun
      // A run to resume is in an existing Landscape: a missing file is a mistyped --db, not one to create.
      yield* requireLandscape(url, ` (${Option.isSome(args.db) ? "--db" : plan.settings.landscape?.url === undefined ? "the default Landscape" : "landscape.url"} ${url})`)
      yield* Effect.gen(function*() {
        // Counting the rows left reads the rest of the source: only the preview needs it.
        const prepared = yield* prepareResume(plan, args.run, { countRowsLeft: args.dryRun })
        if (args.dryRun) {
          if (json) return yield* printJson({ dry_run: true, ...prepared.preview })
          return yield* printHuman(previewText(prepared.preview))
        }
        if (!quiet && !json) {
          yield* printNote(
            `resuming run ${prepared.preview.run_id} from checkpoint ${prepared.preview.checkpoint.sequence}: ${count(prepared.preview.rows_done, "row")} done`
          )
        }
        yield* runAndReport(plan, { json, quiet }, (options) => resumeRun(plan, prepared, options))
      }).pipe(Effect.provide(pipelineRun(plan.settings, url, pipelineTelemetry(plan.settings, { quiet, json }))))
    }).pipe(exitOnError)
).pipe(
  Command.withDescription(
    "Continue a run that was interrupted (a crash, kill -9, Ctrl-C, a full Landscape disk) from its last checkpoint, " +
      "under the same run id: sinks are cut back to what the checkpoint committed, so every row is written exactly " +
      "once. Refuses (exit 2) a completed or failed run, one still owned by a live process, changed settings or a " +
      "changed source file. Exit codes as for run."
  )
)
