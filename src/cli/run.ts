import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Effect, Layer, Option } from "effect"
import { outcomeCountsBySink } from "../landscape/queries.js"
import { SqliteLandscape } from "../landscape/sqlite.js"
import { buildPipeline, type PipelinePlan } from "../pipeline/build.js"
import { builtinRegistry } from "../pipeline/plugins/registry.js"
import { checkExportSigningKey, exportAfterRun } from "../pipeline/orchestrator/export.js"
import { runPipeline } from "../pipeline/orchestrator/run.js"
import type { RunResult } from "../pipeline/orchestrator/types.js"
import { loadPipelineSettings } from "../pipeline/settings.js"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { TelemetryConsole, TelemetryJsonl, TelemetryNoop, TelemetryTee } from "../services/telemetry.js"
import { dbOption, dbUrl, DEFAULT_DB, jsonOption, landscapeErrorsToExit, printHuman, printJson, table } from "./common.js"
import { CliExit, ExitCodes } from "./exit.js"

export const settingsOption = Options.file("settings").pipe(
  Options.withAlias("s"),
  Options.withDescription("Pipeline settings file (YAML); paths inside it resolve against the working directory")
)

const quietOption = Options.boolean("quiet").pipe(
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
    ),
    Effect.mapError((e) => new CliExit({ code: ExitCodes.usage, message: e.text }))
  )

const summary = (plan: PipelinePlan, result: RunResult) =>
  Effect.gen(function*() {
    const counts = yield* outcomeCountsBySink(result.run_id)
    const lines = [
      `run ${result.run_id} ${result.status}: ${result.rows_processed} rows read`,
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

export const runCommand = Command.make(
  "run",
  { settings: settingsOption, db: dbOption, json: jsonOption, quiet: quietOption },
  ({ db, json, quiet, settings }) =>
    Effect.gen(function*() {
      const plan = yield* loadPlan(settings, db)
      // Before any row is read or sink opened: signing needs its key.
      const keyProblem = checkExportSigningKey(plan, process.env)
      if (keyProblem !== undefined) return yield* Effect.fail(new CliExit({ code: ExitCodes.usage, message: keyProblem.message }))
      if (!quiet) for (const w of plan.warnings) yield* printHuman(`warning: ${w}`)
      const url = dbUrl(db, plan.settings.landscape?.url ?? DEFAULT_DB)
      const jsonlPath = plan.settings.telemetry?.enabled === false ? undefined : plan.settings.telemetry?.jsonl_path
      const human = !quiet && !json ? TelemetryConsole : TelemetryNoop
      const telemetry = jsonlPath === undefined
        ? human
        : TelemetryTee(human, TelemetryJsonl(jsonlPath).pipe(Layer.provide(NodeFileSystem.layer)))
      // A failed export leaves the run completed (exit 0); its error goes to stderr.
      const onFailure = (message: string) => printHuman(`runledger: export failed: ${message}`)
      const outcome = yield* exportAfterRun(plan, { onFailure }).pipe(
        Effect.flatMap((afterRun) => runPipeline(plan, afterRun === undefined ? {} : { afterRun })),
        Effect.either,
        Effect.provide(Layer.merge(SqliteLandscape(url), telemetry))
      )
      if (outcome._tag === "Left") {
        const error = outcome.left
        if (error._tag === "RecorderError") return yield* Effect.fail(error)
        if (json && error.result !== undefined) yield* printJson(error.result)
        return yield* Effect.fail(new CliExit({ code: ExitCodes.failed, message: `run ${error.runId} failed: ${error.message}` }))
      }
      const result = outcome.right
      if (json) yield* printJson(result)
      if (!quiet && !json) yield* summary(plan, result).pipe(Effect.provide(SqliteLandscape(url)))
    }).pipe(landscapeErrorsToExit)
).pipe(
  Command.withDescription(
    "Run a pipeline: read the source, apply transforms, aggregations and gates, write the sinks, and record every " +
      "decision about every row in the Landscape. Exit 0 completed, 1 failed, 2 invalid settings, 130 interrupted."
  )
)

export const validateCommand = Command.make("validate", { settings: settingsOption }, ({ settings }) =>
  Effect.gen(function*() {
    const plan = yield* loadPlan(settings)
    for (const w of plan.warnings) yield* printHuman(`warning: ${w}`)
    yield* printHuman(
      `${settings}: valid — ${plan.chain.length} steps, ${plan.sinks.size} sinks, ${plan.graph.nodes.length} nodes, ${plan.graph.edges.length} edges`
    )
  })
).pipe(Command.withDescription("Load and validate pipeline settings and the graph (plugins, routes, schemas); run nothing."))

