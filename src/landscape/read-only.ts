/**
 * A Landscape opened for reading only (the explorer, the MCP server): the file must
 * exist (it is never created), SQLite opens it read-only and `query_only` refuses any
 * write, nothing is migrated and no crashed run is reaped. A file of an older schema is
 * refused with the command that migrates it; a newer one with the version it has.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { Context, Effect, Layer } from "effect"
import { existsSync } from "node:fs"
import type { ExportStore } from "../services/export-store.js"
import type { LoopRecorder } from "../services/loop-recorder.js"
import { type Recorder, RecorderError } from "../services/recorder.js"
import type { ResumeStore } from "../services/resume-store.js"
import { SqlExportStoreLive } from "./export-store.js"
import { LoopRecorderSql } from "./loop-recorder.js"
import { DEFAULT_KEY_ENVS, describeKeyEnvs, type LandscapeEncryption, LandscapeOpenError, openLandscapeClient, passphraseFrom } from "./open.js"
import { notLandscape } from "./recorder-errors.js"
import { ResumeStoreSql } from "./resume-store.js"
import { SqlRecorderLive } from "./sql-recorder.js"
import { LATEST_MIGRATION, LandscapeUrlError, resolveSqliteUrl } from "./sqlite.js"

/** An encrypted file is opened with the passphrase of RUNLEDGER_AUDIT_KEY (or ELSPETH_AUDIT_KEY). */
const detected = (env: Readonly<Record<string, string | undefined>>): LandscapeEncryption => ({
  _tag: "Detect",
  passphrase: passphraseFrom(env, DEFAULT_KEY_ENVS),
  keyEnv: describeKeyEnvs(DEFAULT_KEY_ENVS)
})

const checkSchema = (filename: string, url: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const tables = new Set((yield* sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table'`).map((t) => t.name))
    if (!tables.has("landscape_meta") || !tables.has("effect_sql_migrations")) {
      return yield* Effect.fail(notLandscape(filename, tables.size === 0 ? "it is empty" : `it holds other tables (${[...tables].slice(0, 5).join(", ")})`))
    }
    const [applied] = yield* sql<{ id: number | null }>`SELECT MAX(migration_id) AS id FROM effect_sql_migrations`
    const version = applied?.id ?? 0
    if (version > LATEST_MIGRATION) {
      return yield* Effect.fail(
        new RecorderError({
          reason: "NewerSchema",
          message: `${filename} has Landscape schema version ${version}, newer than this runledger knows (${LATEST_MIGRATION}); upgrade runledger to read it`
        })
      )
    }
    if (version < LATEST_MIGRATION) {
      return yield* Effect.fail(
        new RecorderError({
          reason: "NotALandscape",
          message: `${filename} has Landscape schema version ${version}, older than this runledger's (${LATEST_MIGRATION}), and is opened read-only here; ` +
            `migrate it once with \`runledger runs --db ${url}\``
        })
      )
    }
    yield* sql`PRAGMA query_only = ON`
  }).pipe(
    Effect.catchTag("SqlError", (e) =>
      Effect.fail(new RecorderError({ reason: "Database", message: `opening ${filename}: ${String((e.cause as { message?: unknown })?.message ?? e.message)}`, cause: e }))
    )
  )

/** The SqlClient of the Landscape at `url`, read-only; a missing file is a LandscapeUrlError naming it. */
export const LandscapeSqlReadOnly = (
  url: string,
  env: Readonly<Record<string, string | undefined>> = process.env
): Layer.Layer<SqlClient.SqlClient | SqliteClient.SqliteClient, RecorderError | LandscapeUrlError | LandscapeOpenError> =>
  Layer.scopedContext(
    Effect.gen(function*() {
      const filename = yield* resolveSqliteUrl(url)
      if (filename === ":memory:" || !existsSync(filename)) {
        return yield* Effect.fail(new LandscapeUrlError({ url, message: `no Landscape at ${filename} (--db ${url})` }))
      }
      const handle = yield* openLandscapeClient(filename, detected(env), { readonly: true })
      yield* checkSchema(filename, url).pipe(Effect.provideService(SqlClient.SqlClient, handle.client))
      return Context.make(SqliteClient.SqliteClient, handle.client).pipe(Context.add(SqlClient.SqlClient, handle.client))
    })
  ).pipe(Layer.provide(Reactivity.layer))

/** The read ports (Recorder reads, ExportStore, LoopRecorder reads, ResumeStore reads) over the read-only Landscape. */
export const LandscapeReadOnly = (
  url: string,
  env: Readonly<Record<string, string | undefined>> = process.env
): Layer.Layer<
  Recorder | ExportStore | LoopRecorder | ResumeStore | SqlClient.SqlClient | SqliteClient.SqliteClient,
  RecorderError | LandscapeUrlError | LandscapeOpenError
> =>
  Layer.mergeAll(SqlExportStoreLive, LoopRecorderSql, ResumeStoreSql).pipe(
    Layer.provideMerge(SqlRecorderLive()),
    Layer.provideMerge(LandscapeSqlReadOnly(url, env))
  )
