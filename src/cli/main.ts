import * as Command from "@effect/cli/Command"
import { completionsCommand, setCompletionTree } from "./completions.js"
import { devCommand } from "./dev.js"
import { exportCommand } from "./export.js"
import { explainCommand } from "./explain.js"
import { withCliConsole } from "./help.js"
import { loopCommand } from "./loop.js"
import { mcpCommand } from "./mcp.js"
import { migrateCommand } from "./migrate.js"
import { pluginsCommand } from "./plugins.js"
import { purgeCommand } from "./purge.js"
import { runCommand } from "./run.js"
import { resumeCommand } from "./resume.js"
import { runsCommand } from "./runs.js"
import { serveCommand } from "./serve.js"
import { validateCommand } from "./validate.js"
import { verifyCommand } from "./verify.js"

import { VERSION } from "./version.js"

export { VERSION }

export const rootCommand = Command.make("runledger").pipe(
  Command.withDescription(
    "runledger: auditable runs. Pipelines (source → transforms/gates → sinks) and issue loops, " +
      "with every decision recorded in the Landscape audit database."
  ),
  Command.withSubcommands([runCommand, resumeCommand, validateCommand, runsCommand, explainCommand, exportCommand, verifyCommand, purgeCommand, pluginsCommand, migrateCommand, loopCommand, serveCommand, mcpCommand, devCommand, completionsCommand])
)

setCompletionTree(rootCommand)

const run = Command.run(rootCommand, { name: "runledger", version: VERSION })

/** The CLI on `argv` (node, script, args…), its help and errors in runledger's words (help.ts). */
export const cli = (argv: ReadonlyArray<string>) => withCliConsole(rootCommand.descriptor, argv.slice(2), run(argv))
