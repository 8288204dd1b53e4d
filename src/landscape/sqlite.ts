/**
 * The embedded Landscape: SQLite (plaintext, or SQLCipher-encrypted) through
 * `@effect/sql`, migrated on open, with the optional change journal.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqliteMigrator from "@effect/sql-sqlite-node/SqliteMigrator"
import { Context, Data, Effect, Layer } from "effect"
import { mkdirSync } from "node:fs"
import * as NodePath from "node:path"
import type { ExportStore } from "../services/export-store.js"
import type { LoopRecorder } from "../services/loop-recorder.js"
import type { ResumeStore } from "../services/resume-store.js"
import { Recorder, RecorderError } from "../services/recorder.js"
import { SqlExportStoreLive } from "./export-store.js"
import { defaultJournalPath, type JournalOptions, openJournal } from "./journal.js"
import { LoopRecorderSql } from "./loop-recorder.js"
import { ResumeStoreSql } from "./resume-store.js"
import { CallStoreSql } from "./call-store.js"
import type { CallStore } from "../services/call-store.js"
import migration0001 from "./migrations/0001_pipeline_tables.js"
import migration0002 from "./migrations/0002_loop_tables.js"
import migration0003 from "./migrations/0003_run_attempts.js"
import migration0004 from "./migrations/0004_diverted_outcome.js"
import migration0005 from "./migrations/0005_loop_processes.js"
import migration0006 from "./migrations/0006_loop_integration.js"
import migration0007 from "./migrations/0007_loop_export_status.js"
import migration0008 from "./migrations/0008_lineage_indexes.js"
import migration0009 from "./migrations/0009_external_calls.js"
import migration0010 from "./migrations/0010_compact_keys.js"
import { reapCrashedRuns } from "./reap.js"
import { DEFAULT_ENCRYPTION, type LandscapeEncryption, LandscapeOpenError, openLandscapeClient } from "./open.js"
import { notLandscape } from "./recorder-errors.js"
import { SqlRecorderLive, type SqlRecorderOptions } from "./sql-recorder.js"
import type { LandscapeClient } from "./sqlite-client.js"

export {
  DEFAULT_KEY_ENVS,
  describeKeyEnvs,
  type LandscapeEncryption,
  LandscapeOpenError,
  passphraseFrom
} from "./open.js"

/** Every migration this version knows, by `<id>_<name>`. Never edit an applied one. */
export const migrations = {
  "0001_pipeline_tables": migration0001,
  "0002_loop_tables": migration0002,
  "0003_run_attempts": migration0003,
  "0004_diverted_outcome": migration0004,
  "0005_loop_processes": migration0005,
  "0006_loop_integration": migration0006,
  "0007_loop_export_status": migration0007,
  "0008_lineage_indexes": migration0008,
  "0009_external_calls": migration0009,
  "0010_compact_keys": migration0010
} as const

/** The highest migration id (ids need not be contiguous). */
export const LATEST_MIGRATION = Math.max(...Object.keys(migrations).map((name) => Number(name.slice(0, 4))))

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

/** Checks what the file holds before migrating: a Landscape of this or an older version, or nothing. */
const checkAndMigrate = (filename: string, onUpgrade?: (message: string) => void) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const tables = yield* sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table'`.pipe(
      Effect.mapError((e) => notLandscape(filename, String((e.cause as { message?: string })?.message ?? e.message)))
    )
    const names = new Set(tables.map((t) => t.name))
    let newest = 0
    if (names.size > 0) {
      if (!names.has("effect_sql_migrations") || !names.has("landscape_meta")) {
        return yield* Effect.fail(notLandscape(filename, `it holds other tables (${Array.from(names).slice(0, 5).join(", ")})`))
      }
      const applied = yield* sql<{ id: number }>`SELECT MAX(migration_id) AS id FROM effect_sql_migrations`.pipe(
        Effect.mapError((e) => notLandscape(filename, e.message))
      )
      newest = applied[0]?.id ?? 0
      if (newest > LATEST_MIGRATION) {
        return yield* Effect.fail(
          new RecorderError({
            reason: "NewerSchema",
            message: `${filename} has Landscape schema version ${newest}, newer than this runledger knows (${LATEST_MIGRATION}); upgrade runledger to read it`
          })
        )
      }
    }
    yield* sql`PRAGMA busy_timeout = 5000`
    yield* sql`PRAGMA synchronous = NORMAL`
    // Migrations rebuild tables that others refer to, which SQLite allows only with
    // foreign keys off (it cannot switch them inside the migrations' transaction); an
    // existing file is checked whole once they have run.
    yield* sql`PRAGMA foreign_keys = OFF`
    if (newest > 0 && newest < LATEST_MIGRATION && onUpgrade !== undefined) {
      onUpgrade(
        `upgrading the Landscape ${filename} from schema version ${newest} to ${LATEST_MIGRATION}; this happens once, ` +
          `and on a large file it takes a while (it rewrites every run's trail)`
      )
    }
    yield* SqliteMigrator.run({ loader: SqliteMigrator.fromRecord(migrations) }).pipe(
      Effect.provide(NodeContext.layer),
      Effect.mapError((e) =>
        new RecorderError({ reason: "Database", message: `migrating ${filename}: ${e.message}`, cause: e })
      )
    )
    if (newest > 0 && newest < LATEST_MIGRATION) {
      const broken = yield* sql<{ table: string; parent: string }>`PRAGMA foreign_key_check`
      if (broken.length > 0) {
        const first = broken[0]!
        return yield* Effect.fail(
          new RecorderError({
            reason: "Database",
            message: `migrating ${filename}: ${broken.length} record(s) refer to records that do not exist (first: ${first.table} → ${first.parent})`
          })
        )
      }
    }
    yield* sql`PRAGMA foreign_keys = ON`
  }).pipe(
    Effect.catchTag("SqlError", (e) =>
      Effect.fail(new RecorderError({ reason: "Database", message: `opening ${filename}: ${e.message}`, cause: e }))
    )
  )

export interface LandscapeOpenOptions {
  /** Told, before it starts, that an existing file of an older schema is being upgraded. */
  readonly onUpgrade?: ((message: string) => void) | undefined
  /** Default: a plaintext file, or an encrypted one refused (no passphrase is known). */
  readonly encryption?: LandscapeEncryption
  /** The change journal; its path defaults to the Landscape file's with `.journal.jsonl`. */
  readonly journal?: Omit<JournalOptions, "path"> & { readonly path?: string | undefined }
}

const startJournal = (handle: LandscapeClient, filename: string, journal: NonNullable<LandscapeOpenOptions["journal"]>) =>
  Effect.gen(function*() {
    const path = journal.path ?? (filename === ":memory:" ? undefined : defaultJournalPath(filename))
    if (path === undefined) {
      return yield* Effect.fail(
        new LandscapeOpenError({
          file: filename,
          reason: "Journal",
          message: "landscape.dump_to_jsonl: a Landscape in :memory: has no file to name its journal after; give landscape.dump_to_jsonl_path"
        })
      )
    }
    const resolved = NodePath.resolve(path)
    if (["", "-wal", "-shm", "-journal"].some((suffix) => resolved === `${filename}${suffix}`)) {
      return yield* Effect.fail(
        new LandscapeOpenError({
          file: filename,
          reason: "Journal",
          message: `landscape.dump_to_jsonl_path: ${resolved} is the Landscape database itself (or one of its files); write the journal elsewhere`
        })
      )
    }
    const opened = yield* Effect.try({
      try: () => openJournal(handle.db, { ...journal, path }),
      catch: (e) => e
    }).pipe(Effect.either)
    if (opened._tag === "Left") {
      const why = String((opened.left as { message?: unknown }).message ?? opened.left)
      if (journal.failOnError) {
        return yield* Effect.fail(
          new LandscapeOpenError({
            file: filename,
            reason: "Journal",
            message: `the Landscape journal ${NodePath.resolve(path)} cannot be opened (${why}); ` +
              `landscape.dump_to_jsonl_fail_on_error is true, so nothing is run`
          })
        )
      }
      journal.warn(`the Landscape journal ${NodePath.resolve(path)} cannot be opened (${why}); the run goes on without it`)
      return
    }
    const j = opened.right
    handle.setCommitListener(j.afterCommit)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        handle.setCommitListener(undefined)
        j.close()
      })
    )
  })

/** SqlClient for the Landscape at `url`: keyed as `options.encryption` says, migrated, foreign keys on, WAL, busy timeout. */
export const LandscapeSql = (
  url: string,
  options: LandscapeOpenOptions = {}
): Layer.Layer<SqlClient.SqlClient | SqliteClient.SqliteClient, RecorderError | LandscapeUrlError | LandscapeOpenError> =>
  Layer.scopedContext(
    Effect.gen(function*() {
      const filename = yield* resolveSqliteUrl(url)
      if (filename !== ":memory:") {
        yield* Effect.try({
          try: () => mkdirSync(NodePath.dirname(filename), { recursive: true }),
          catch: (e) => new LandscapeUrlError({ url, message: `cannot create the folder of ${filename}: ${String(e)}` })
        })
      }
      const handle = yield* openLandscapeClient(filename, options.encryption ?? DEFAULT_ENCRYPTION)
      const provideSql = Effect.provideService(SqlClient.SqlClient, handle.client)
      yield* checkAndMigrate(filename, options.onUpgrade).pipe(provideSql)
      if (options.journal !== undefined) yield* startJournal(handle, filename, options.journal)
      // A run whose process died is recorded as such by whichever command opens the file next.
      yield* reapCrashedRuns.pipe(
        provideSql,
        Effect.catchTag("SqlError", (e) =>
          Effect.fail(new RecorderError({ reason: "Database", message: `opening ${filename}: ${e.message}`, cause: e }))
        )
      )
      return Context.make(SqliteClient.SqliteClient, handle.client).pipe(Context.add(SqlClient.SqlClient, handle.client))
    })
  ).pipe(Layer.provide(Reactivity.layer))

/**
 * The default Landscape layer: the Recorder, the ExportStore, the LoopRecorder and the
 * ResumeStore (and the SqlClient under them) for a SQLite file or `:memory:`. One
 * connection; provide it once at the edge. `options` adds the recorder's (buffer size,
 * payload store) and how to open the file (encryption, journal).
 */
export const SqliteLandscape = (
  url: string,
  options: SqlRecorderOptions & LandscapeOpenOptions = {}
): Layer.Layer<
  Recorder | ExportStore | LoopRecorder | ResumeStore | CallStore | SqlClient.SqlClient | SqliteClient.SqliteClient,
  RecorderError | LandscapeUrlError | LandscapeOpenError
> =>
  Layer.mergeAll(SqlExportStoreLive, LoopRecorderSql, ResumeStoreSql, CallStoreSql).pipe(
    Layer.provideMerge(SqlRecorderLive(options)),
    Layer.provideMerge(LandscapeSql(url, options)),
    Layer.provideMerge(options.payloadStore === undefined ? Layer.empty : payloadStoreReady(options.payloadStore.basePath))
  )

/** The payload store's folder exists (or can be made) before anything is recorded. */
const payloadStoreReady = (basePath: string) =>
  Layer.effectDiscard(Effect.try({
    try: () => mkdirSync(basePath, { recursive: true }),
    catch: (e) =>
      new LandscapeOpenError({
        file: basePath,
        reason: "PayloadStore",
        message: `payload_store.base_path: cannot create ${basePath} (${String((e as { code?: unknown }).code ?? e)})`
      })
  }))
