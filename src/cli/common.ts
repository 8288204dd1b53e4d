import * as Options from "@effect/cli/Options"
import { Effect, Option } from "effect"
import { existsSync } from "node:fs"
import { LandscapeUrlError, resolveSqliteUrl } from "../landscape/sqlite.js"
import { exitOnError } from "./exit.js"

export const DEFAULT_DB = "sqlite:///./runledger.db"

export const dbOption = Options.text("db").pipe(
  Options.withAlias("database"),
  Options.withAlias("d"),
  Options.withPseudoName("URL"),
  Options.withDescription(
    "Landscape (audit database) URL: sqlite:///relative.db, sqlite:////absolute.db or a plain path. " +
      "Overrides landscape.url of the settings; default sqlite:///./runledger.db. --database and -d are ELSPETH's spellings"
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

/**
 * A command's human result (a summary, a table, a narrative) on stdout, so that
 * `runledger runs > file` keeps it. With `--json` commands print the JSON instead.
 */
export const printHuman = (text: string) => Effect.sync(() => process.stdout.write(text.endsWith("\n") ? text : text + "\n"))

/** Diagnostics (warnings, notes, progress) on stderr, apart from the result on stdout. */
export const printNote = (text: string) => Effect.sync(() => process.stderr.write(text.endsWith("\n") ? text : text + "\n"))

/**
 * For commands that read a trail: a Landscape file that does not exist is a mistyped
 * --db (exit 2, `no Landscape at FILE` + `detail`), not a Landscape to create.
 */
export const requireLandscape = (url: string, detail = "") =>
  resolveSqliteUrl(url).pipe(
    Effect.filterOrFail(
      (filename) => filename === ":memory:" || existsSync(filename),
      (filename) => new LandscapeUrlError({ url, message: `no Landscape at ${filename}${detail}` })
    )
  )

/** The same as `exitOnError` (cli/exit.ts), which maps every typed error to its exit code. */
export const landscapeErrorsToExit = exitOnError

/** `1 step`, `3 steps`: a count and its noun (plural `plural`, else the noun + s). */
export const count = (n: number | null | undefined, noun: string, plural = `${noun}s`): string =>
  `${n ?? "?"} ${n === 1 ? noun : plural}`

/** Pads columns of a small text table. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()
  return [line(header), ...rows.map(line)].join("\n")
}
