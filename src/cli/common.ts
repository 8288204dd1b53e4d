import * as Options from "@effect/cli/Options"
import { Effect, Option } from "effect"
import { LandscapeUrlError } from "../landscape/sqlite.js"
import { RecorderError } from "../services/recorder.js"
import { CliExit, ExitCodes } from "./exit.js"

export const DEFAULT_DB = "sqlite:///./runledger.db"

export const dbOption = Options.text("db").pipe(
  Options.withDescription(
    "Landscape (audit database) URL: sqlite:///relative.db, sqlite:////absolute.db or a plain path. " +
      "Overrides landscape.url of the settings; default sqlite:///./runledger.db"
  ),
  Options.optional
)

export const jsonOption = Options.boolean("json").pipe(
  Options.withDescription("Print one JSON document on stdout and nothing else there")
)

export const dbUrl = (db: Option.Option<string>, fallback?: string): string =>
  Option.getOrElse(db, () => fallback ?? DEFAULT_DB)

/** Writes a JSON document on stdout (the only thing `--json` commands put there). */
export const printJson = (value: unknown) => Effect.sync(() => process.stdout.write(JSON.stringify(value, null, 2) + "\n"))

/** Human output goes to stderr so stdout stays clean for pipes. */
export const printHuman = (text: string) => Effect.sync(() => process.stderr.write(text.endsWith("\n") ? text : text + "\n"))

const toExit = (e: LandscapeUrlError | RecorderError): CliExit => {
  const usage = e._tag === "LandscapeUrlError" || e.reason === "NotALandscape" || e.reason === "NewerSchema" ||
    e.reason === "MissingRun"
  return new CliExit({ code: usage ? ExitCodes.usage : ExitCodes.failed, message: e.message })
}

/** Maps the Landscape's typed errors to the CLI's exit codes. */
export const landscapeErrorsToExit = <A, E, R>(
  effect: Effect.Effect<A, E | LandscapeUrlError | RecorderError, R>
): Effect.Effect<A, Exclude<E, LandscapeUrlError | RecorderError> | CliExit, R> =>
  effect.pipe(
    Effect.catchIf(
      (e): e is LandscapeUrlError | RecorderError => e instanceof LandscapeUrlError || e instanceof RecorderError,
      (e) => Effect.fail(toExit(e))
    )
  ) as never

/** Pads columns of a small text table. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()
  return [line(header), ...rows.map(line)].join("\n")
}
