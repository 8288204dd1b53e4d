/**
 * The embedded Landscape: SQLite through `@effect/sql-sqlite-node`, migrated on open.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqliteMigrator from "@effect/sql-sqlite-node/SqliteMigrator"
import { Data, Effect, Layer } from "effect"
import { closeSync, mkdirSync, openSync, readSync, statSync } from "node:fs"
import * as NodePath from "node:path"
import type { ExportStore } from "../services/export-store.js"
import type { LoopRecorder } from "../services/loop-recorder.js"
import type { ResumeStore } from "../services/resume-store.js"
import { Recorder, RecorderError } from "../services/recorder.js"
import { SqlExportStoreLive } from "./export-store.js"
import { LoopRecorderSql } from "./loop-recorder.js"
import { ResumeStoreSql } from "./resume-store.js"
import migration0001 from "./migrations/0001_pipeline_tables.js"
import migration0002 from "./migrations/0002_loop_tables.js"
import migration0003 from "./migrations/0003_run_attempts.js"
import migration0004 from "./migrations/0004_diverted_outcome.js"
import { reapCrashedRuns } from "./reap.js"
import { SqlRecorderLive, type SqlRecorderOptions } from "./sql-recorder.js"

/** Every migration this version knows, by `<id>_<name>`. Never edit an applied one. */
export const migrations = {
  "0001_pipeline_tables": migration0001,
  "0002_loop_tables": migration0002,
  "0003_run_attempts": migration0003,
  "0004_diverted_outcome": migration0004
} as const

export const LATEST_MIGRATION = Object.keys(migrations).length

export class LandscapeUrlError extends Data.TaggedError("LandscapeUrlError")<{
  readonly url: string
  readonly message: string
}> {}

/**
 * Resolves a Landscape URL to a SQLite filename:
 * `sqlite:///relative.db` (relative to the working directory), `sqlite:////abs.db`,
 * a plain path, or `:memory:` (also `sqlite:///:memory:`).
 */
export const resolveSqliteUrl = (url: string, cwd: string = process.cwd()): Effect.Effect<string, LandscapeUrlError> =>
  Effect.suspend(() => {
    const trimmed = url.trim()
    if (trimmed === "") return Effect.fail(new LandscapeUrlError({ url, message: "the Landscape URL is empty" }))
    if (trimmed === ":memory:" || trimmed === "sqlite:///:memory:" || trimmed === "sqlite://") return Effect.succeed(":memory:")
    const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(trimmed)
    if (scheme === null) return Effect.succeed(NodePath.resolve(cwd, trimmed))
    if (scheme[1] !== "sqlite") {
      return Effect.fail(
        new LandscapeUrlError({
          url,
          message: `unsupported Landscape URL scheme '${scheme[1]}'; use sqlite:///relative.db, sqlite:////absolute.db or a plain path`
        })
      )
    }
    const rest = trimmed.slice("sqlite://".length)
    if (!rest.startsWith("/") || rest.length === 1) {
      return Effect.fail(new LandscapeUrlError({ url, message: `a sqlite URL needs a path: sqlite:///relative.db or sqlite:////absolute.db` }))
    }
    const path = rest.slice(1)
    return Effect.succeed(path.startsWith("/") ? path : NodePath.resolve(cwd, path))
  })

const notLandscape = (filename: string, why: string) =>
  new RecorderError({ reason: "NotALandscape", message: `${filename} is not a runledger Landscape: ${why}` })

/** Checks what the file holds before migrating: a Landscape of this or an older version, or nothing. */
const checkAndMigrate = (filename: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const tables = yield* sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table'`.pipe(
      Effect.mapError((e) => notLandscape(filename, String((e.cause as { message?: string })?.message ?? e.message)))
    )
    const names = new Set(tables.map((t) => t.name))
    if (names.size > 0) {
      if (!names.has("effect_sql_migrations") || !names.has("landscape_meta")) {
        return yield* Effect.fail(notLandscape(filename, `it holds other tables (${Array.from(names).slice(0, 5).join(", ")})`))
      }
      const applied = yield* sql<{ id: number }>`SELECT MAX(migration_id) AS id FROM effect_sql_migrations`.pipe(
        Effect.mapError((e) => notLandscape(filename, e.message))
      )
      const newest = applied[0]?.id ?? 0
      if (newest > LATEST_MIGRATION) {
        return yield* Effect.fail(
          new RecorderError({
            reason: "NewerSchema",
            message: `${filename} has Landscape schema version ${newest}, newer than this runledger knows (${LATEST_MIGRATION}); upgrade runledger to read it`
          })
        )
      }
    }
    yield* sql`PRAGMA foreign_keys = ON`
    yield* sql`PRAGMA busy_timeout = 5000`
    yield* sql`PRAGMA synchronous = NORMAL`
    yield* SqliteMigrator.run({ loader: SqliteMigrator.fromRecord(migrations) }).pipe(
      Effect.provide(NodeContext.layer),
      Effect.mapError((e) =>
        new RecorderError({ reason: "Database", message: `migrating ${filename}: ${e.message}`, cause: e })
      )
    )
    // A run whose process died is recorded as such by whichever command opens the file next.
    yield* reapCrashedRuns
  }).pipe(
    Effect.catchTag("SqlError", (e) =>
      Effect.fail(new RecorderError({ reason: "Database", message: `opening ${filename}: ${e.message}`, cause: e }))
    )
  )

const SQLITE_HEADER = "SQLite format 3\u0000"

/** A non-empty file that does not start with the SQLite header would make the driver die on open. */
const checkHeader = (filename: string): Effect.Effect<void, RecorderError> =>
  Effect.suspend(() => {
    let size = 0
    try {
      size = statSync(filename).size
    } catch {
      return Effect.void
    }
    if (size === 0) return Effect.void
    const head = Buffer.alloc(16)
    try {
      const fd = openSync(filename, "r")
      try {
        readSync(fd, head, 0, 16, 0)
      } finally {
        closeSync(fd)
      }
    } catch (e) {
      return Effect.fail(notLandscape(filename, `it cannot be read (${String(e)})`))
    }
    return head.toString("latin1") === SQLITE_HEADER
      ? Effect.void
      : Effect.fail(notLandscape(filename, "it is not a SQLite database"))
  })

/** SqlClient for the Landscape at `url`, migrated, foreign keys on, WAL, busy timeout. */
export const LandscapeSql = (url: string): Layer.Layer<SqlClient.SqlClient | SqliteClient.SqliteClient, RecorderError | LandscapeUrlError> =>
  Layer.unwrapEffect(
    Effect.gen(function*() {
      const filename = yield* resolveSqliteUrl(url)
      if (filename !== ":memory:") {
        yield* Effect.try({
          try: () => mkdirSync(NodePath.dirname(filename), { recursive: true }),
          catch: (e) => new LandscapeUrlError({ url, message: `cannot create the folder of ${filename}: ${String(e)}` })
        })
        yield* checkHeader(filename)
      }
      const client = SqliteClient.layer({ filename })
      return Layer.effectDiscard(checkAndMigrate(filename)).pipe(Layer.provideMerge(client))
    })
  ).pipe(Layer.catchAll((e) => Layer.fail(e._tag === "ConfigError" ? new LandscapeUrlError({ url, message: String(e) }) : e))) as never

/**
 * The default Landscape layer: the Recorder, the ExportStore, the LoopRecorder and the
 * ResumeStore (and
 * the SqlClient under them) for a SQLite file or `:memory:`. One connection; provide it
 * once at the edge.
 */
export const SqliteLandscape = (
  url: string,
  options?: SqlRecorderOptions
): Layer.Layer<
  Recorder | ExportStore | LoopRecorder | ResumeStore | SqlClient.SqlClient | SqliteClient.SqliteClient,
  RecorderError | LandscapeUrlError
> =>
  Layer.mergeAll(SqlExportStoreLive, LoopRecorderSql, ResumeStoreSql).pipe(
    Layer.provideMerge(SqlRecorderLive(options)),
    Layer.provideMerge(LandscapeSql(url))
  )
