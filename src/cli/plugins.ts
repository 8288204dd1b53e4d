import * as Command from "@effect/cli/Command"
import { Effect } from "effect"
import { builtinPlugins } from "../pipeline/plugins/registry.js"
import { jsonOption, printHuman, printJson, table } from "./common.js"

export const pluginsCommand = Command.make("plugins", { json: jsonOption }, ({ json }) =>
  Effect.gen(function*() {
    const rows = builtinPlugins.map((p) => ({
      kind: p.kind === "transform" && p.batchAware ? "aggregation" : p.kind,
      name: p.name,
      description: p.description
    }))
    if (json) return yield* printJson(rows)
    yield* printHuman(table(["KIND", "NAME", "DESCRIPTION"], rows.map((r) => [r.kind, r.name, r.description])))
  })
).pipe(Command.withDescription("List the built-in sources, transforms, aggregation plugins and sinks."))
