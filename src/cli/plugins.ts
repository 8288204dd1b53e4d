import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Effect, Option } from "effect"
import { builtinPlugins } from "../pipeline/plugins/registry.js"
import { jsonOption, printHuman, printJson, table } from "./common.js"

const KINDS = ["source", "transform", "aggregation", "sink"] as const

const typeOption = Options.choice("type", KINDS).pipe(
  Options.withAlias("t"),
  Options.withDescription("Only the plugins of this kind (ELSPETH's --type)"),
  Options.optional
)

const config = { json: jsonOption, type: typeOption }

const listPlugins = ({ json, type }: { readonly json: boolean; readonly type: Option.Option<(typeof KINDS)[number]> }) =>
  Effect.gen(function*() {
    const rows = builtinPlugins
      .map((p) => ({
        kind: p.kind === "transform" && p.batchAware ? "aggregation" : p.kind,
        name: p.name,
        description: p.description
      }))
      .filter((r) => Option.isNone(type) || r.kind === type.value)
    if (json) return yield* printJson(rows)
    yield* printHuman(table(["KIND", "NAME", "DESCRIPTION"], rows.map((r) => [r.kind, r.name, r.description])))
  })

/** `plugins list` is ELSPETH's spelling of `plugins`. */
const pluginsListCommand = Command.make("list", config, listPlugins).pipe(
  Command.withDescription("The same as `runledger plugins`: list the built-in plugins.")
)

export const pluginsCommand = Command.make("plugins", config, listPlugins).pipe(
  Command.withDescription(
    "List the built-in sources, transforms, aggregation plugins and sinks (`plugins list` is the same; --type filters by kind)."
  ),
  Command.withSubcommands([pluginsListCommand])
)
