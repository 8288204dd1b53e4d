import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Effect, Option } from "effect"
import { count, printHuman, printNote } from "./common.js"
import { exitOnError, usageError } from "./exit.js"
import { GRAPH_FORMATS, type GraphFormat, renderGraph } from "./graph-view.js"
import { loadPlan, settingsOption } from "./run.js"

const graphOption = Options.boolean("graph").pipe(
  Options.withDescription(
    "Also print the DAG the settings build, on stdout: an indented tree (source → nodes → sinks, each edge with its " +
      "label and mode: move, copy or divert); `--graph mermaid` prints a Mermaid flowchart instead"
  )
)

const graphFormatArg = Args.choice(GRAPH_FORMATS.map((f) => [f, f] as const), { name: "FORMAT" }).pipe(
  Args.withDescription("With --graph: text (the default) or mermaid"),
  Args.optional
)

export const validateCommand = Command.make(
  "validate",
  { settings: settingsOption, graph: graphOption, format: graphFormatArg },
  ({ format, graph, settings }) =>
    Effect.gen(function*() {
      if (!graph && Option.isSome(format)) {
        return yield* Effect.fail(usageError(`'${format.value}' is a --graph format: give --graph ${format.value}`))
      }
      const plan = yield* loadPlan(settings)
      for (const w of plan.warnings) yield* printNote(`warning: ${w}`)
      if (graph) {
        const chosen: GraphFormat = Option.getOrElse(format, () => "text" as const)
        yield* Effect.sync(() => process.stdout.write(renderGraph(plan.graph, chosen) + "\n"))
      }
      // With --graph stdout holds the graph alone (`validate --graph mermaid > dag.mmd`).
      yield* (graph ? printNote : printHuman)(
        `${settings}: valid — ${count(plan.chain.length, "step")}, ${count(plan.sinks.size, "sink")}, ${count(plan.graph.nodes.length, "node")}, ${count(plan.graph.edges.length, "edge")}`
      )
    }).pipe(exitOnError)
).pipe(
  Command.withDescription(
    "Load and validate pipeline settings and the graph (plugins, routes, schemas); run nothing, create nothing. " +
      "With --graph, print the DAG on stdout (--graph mermaid: as a Mermaid flowchart). Exit 0 valid, 2 invalid."
  )
)
