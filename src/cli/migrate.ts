import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Console, Effect, Option } from "effect"
import { readFileSync, writeFileSync } from "node:fs"
import { migrateSettings } from "../pipeline/migrate.js"
import { SettingsError } from "../pipeline/settings.js"
import { printHuman, printNote } from "./common.js"
import { exitOnError } from "./exit.js"

const fileArg = Args.file({ name: "OLD.yaml", exists: "either" }).pipe(
  Args.withDescription("A settings file in the positional form (default_sink, list order)")
)

const outputOption = Options.file("output").pipe(
  Options.withAlias("o"),
  Options.optional,
  Options.withDescription("Write the result to this file instead of stdout (never the input file)")
)

/** `runledger migrate-settings OLD.yaml`: the same pipeline in the explicit-wiring form. */
export const migrateCommand = Command.make("migrate-settings", { file: fileArg, output: outputOption }, ({ file, output }) =>
  Effect.gen(function*() {
    const text = yield* Effect.try({
      try: () => readFileSync(file, "utf8"),
      catch: (e) =>
        new SettingsError({
          file,
          key: "",
          message: (e as { code?: string }).code === "ENOENT" ? "settings file not found" : `cannot read the settings file (${String(e)})`
        })
    })
    const migrated = yield* migrateSettings(file, text)
    for (const note of migrated.notes) yield* printNote(`note: ${note}`)
    if (Option.isSome(output)) {
      yield* Effect.try({
        try: () => writeFileSync(output.value, migrated.text, { flag: "wx" }),
        catch: (e) =>
          new SettingsError({
            file: output.value,
            key: "",
            message: (e as { code?: string }).code === "EEXIST" ? "the output file exists; choose a new name" : `cannot write the output (${String(e)})`
          })
      })
      yield* printHuman(`wrote ${output.value}`)
    } else yield* Console.log(migrated.text.replace(/\n$/, ""))
  }).pipe(exitOnError)
).pipe(
  Command.withDescription(
    "Print a positional-form settings file (default_sink, continue, list order) in the explicit wiring of ELSPETH's current format " +
      "(source.on_success, input/on_success on every node): the same pipeline, comments and ${VAR} references kept. " +
      "Refuses, with the reason, the two shapes the explicit form cannot express."
  )
)
