import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Effect, Option } from "effect"
import { outcomeCountsBySink } from "../landscape/queries.js"
import { buildPipeline, type PipelinePlan } from "../pipeline/build.js"
import { builtinRegistry } from "../pipeline/plugins/registry.js"
import { checkExportSigningKey, exportAfterRun } from "../pipeline/orchestrator/export.js"
import { runPipeline, type RunPipelineOptions } from "../pipeline/orchestrator/run.js"
import type { RunResult } from "../pipeline/orchestrator/types.js"
import { loadPipelineSettings } from "../pipeline/settings.js"
import { count, dbOption, dbUrl, DEFAULT_DB, jsonOption, printHuman, printJson, printNote, table } from "./common.js"
import { exitOnError, usageError } from "./exit.js"
import { useRunHeap } from "./heap.js"
import { pipelineRun, pipelineTelemetry } from "./layers.js"
import { describePlan, planText } from "./plan-view.js"

export const settingsOption = Options.file("settings").pipe(
  Options.withAlias("s"),
  Options.withDescription("Pipeline settings file (YAML); paths inside it resolve against the working directory")
)

export const quietOption = Options.boolean("quiet").pipe(
  Options.withAlias("q"),
  Options.withDescription("No progress line, no summary; errors only")
)

/**
 * Loads and builds the plan; settings problems exit 2 naming file, key and value.
 * `db` is the `--db` override: the plan is checked against the Landscape the run uses.
 */
export const loadPlan = (file: string, db: Option.Option<string> = Option.none()) =>
  loadPipelineSettings(file).pipe(
    Effect.flatMap((loaded) =>
      buildPipeline(loaded, builtinRegistry, {
        landscape: Option.isSome(db)
          ? { url: db.value, key: "--db" }
          : loaded.settings.landscape?.url === undefined
          ? { url: DEFAULT_DB, key: "the default Landscape" }
          : { url: loaded.settings.landscape.url, key: "landscape.url" }
      })
    )
  )

const summary = (plan: PipelinePlan, result: RunResult) =>
  Effect.gen(function*() {
    const counts = yield* outcomeCountsBySink(result.run_id)
    const lines = [
      `run ${result.run_id} ${result.status}: ${count(result.rows_processed, "row")} read`,
      "",
      table(
        ["OUTCOME", "SINK", "TOKENS"],
        counts.map((c) => [c.outcome, c.sink_name ?? "-", String(c.n)])
      )
    ]
    if (result.export_status !== null) lines.push("", `export: ${result.export_status}`)
    if (plan.warnings.length > 0) lines.push("")
    yield* printHuman(lines.join("\n"))
  })

/**
 * Runs `start` with the export of the settings after it, then prints the RunResult
 * (`--json`, also for a failed run) or the summary: what `run` and `resume` share.
 */
export const runAndReport = <E, R>(
  plan: PipelinePlan,
  output: { readonly json: boolean; readonly quiet: boolean },
  start: (options: Pick<RunPipelineOptions, "afterRun">) => Effect.Effect<RunResult, E, R>
) =>
  Effect.gen(function*() {
    yield* useRunHeap
    // A failed export leaves the run completed (exit 0); its error goes to stderr.
    const onFailure = (message: string) => printNote(`runledger: export failed: ${message}`)
    const afterRun = yield* exportAfterRun(plan, { onFailure })
    const result = yield* start(afterRun === undefined ? {} : { afterRun }).pipe(
      // With --json a failed run still prints its RunResult.
      Effect.tapError((e) =>
        output.json && typeof e === "object" && e !== null && (e as { _tag?: unknown })._tag === "PipelineRunError" &&
          (e as { result?: RunResult }).result !== undefined
          ? printJson((e as { result?: RunResult }).result)
          : Effect.void
      )
    )
    if (output.json) yield* printJson(result)
    if (!output.quiet && !output.json) yield* summary(plan, result)
  })

const dryRunOption = Options.boolean("dry-run").pipe(
  Options.withAlias("n"),
  Options.withDescription(
    "Validate the settings and print the plan (the DAG, the sinks and their files, the Landscape, the checkpoint " +
      "policy), then stop: no row is read, no file or directory is created or changed, no Landscape is opened"
  )
)

const executeOption = Options.boolean("execute").pipe(
  Options.withAlias("x"),
  Options.withDescription("Accepted for ELSPETH compatibility and does nothing: runledger executes by default (stop short with --dry-run)")
)

const formatOption = Options.choice("format", ["console", "text", "json"]).pipe(
  Options.withAlias("f"),
  Options.withDescription("ELSPETH's spelling: --format json is --json; console (or text) is the default"),
  Options.optional
)

export const runCommand = Command.make(
  "run",
  {
    settings: settingsOption,
    db: dbOption,
    dryRun: dryRunOption,
    execute: executeOption,
    json: jsonOption,
    format: formatOption,
    quiet: quietOption
  },
  (args) =>
    Effect.gen(function*() {
      const { db, quiet, settings } = args
      const json = args.json || Option.getOrUndefined(args.format) === "json"
      if (args.dryRun && args.execute) return yield* Effect.fail(usageError("--dry-run and --execute contradict each other; give one"))
      const plan = yield* loadPlan(settings, db)
      // Before any row is read or sink opened: signing needs its key.
      const keyProblem = checkExportSigningKey(plan, process.env)
      if (keyProblem !== undefined) return yield* Effect.fail(keyProblem)
      if (!quiet) for (const w of plan.warnings) yield* printNote(`warning: ${w}`)
      const url = dbUrl(db, plan.settings.landscape?.url ?? DEFAULT_DB)
      if (args.dryRun) {
        const description = yield* describePlan(plan, url)
        if (json) return yield* printJson(description)
        if (!quiet) yield* printHuman(planText(description, plan.graph))
        return
      }
      yield* runAndReport(plan, { json, quiet }, (options) => runPipeline(plan, options)).pipe(
        Effect.provide(pipelineRun(plan.settings, url, pipelineTelemetry(plan.settings, { quiet, json })))
      )
    }).pipe(exitOnError)
).pipe(
  Command.withDescription(
    "Run a pipeline: read the source, apply transforms, aggregations and gates, write the sinks, and record every " +
      "decision about every row in the Landscape. runledger executes by default: --execute (-x) is accepted and " +
      "changes nothing; --dry-run (-n) validates and prints the plan without touching any file. " +
      "Exit 0 completed (or valid with --dry-run), 1 failed, 2 invalid settings, 130 interrupted."
  )
)
