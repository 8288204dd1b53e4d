import * as Command from "@effect/cli/Command"
import { devCommand } from "./dev.js"
import { exportCommand } from "./export.js"
import { explainCommand } from "./explain.js"
import { loopCommand } from "./loop.js"
import { migrateCommand } from "./migrate.js"
import { pluginsCommand } from "./plugins.js"
import { purgeCommand } from "./purge.js"
import { runCommand } from "./run.js"
import { resumeCommand } from "./resume.js"
import { runsCommand } from "./runs.js"
import { validateCommand } from "./validate.js"
import { verifyCommand } from "./verify.js"

export const VERSION = "0.1.0"

export const rootCommand = Command.make("runledger").pipe(
  Command.withDescription(
    "runledger: auditable runs. Pipelines (source → transforms/gates → sinks) and issue loops, " +
      "with every decision recorded in the Landscape audit database."
  ),
  Command.withSubcommands([runCommand, resumeCommand, validateCommand, runsCommand, explainCommand, exportCommand, verifyCommand, purgeCommand, pluginsCommand, migrateCommand, loopCommand, devCommand])
)

export const cli = Command.run(rootCommand, { name: "runledger", version: VERSION })
