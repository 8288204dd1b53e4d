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
import { closeSync, mkdirSync, openSync, readSync, statSync } from "node:fs"
import * as NodePath from "node:path"
import type { ExportStore } from "../services/export-store.js"
import type { LoopRecorder } from "../services/loop-recorder.js"
import type { ResumeStore } from "../services/resume-store.js"
import { Recorder, RecorderError } from "../services/recorder.js"
import { SqlExportStoreLive } from "./export-store.js"
import { defaultJournalPath, type JournalOptions, openJournal } from "./journal.js"
import { LoopRecorderSql } from "./loop-recorder.js"
import { ResumeStoreSql } from "./resume-store.js"
import migration0001 from "./migrations/0001_pipeline_tables.js"
import migration0002 from "./migrations/0002_loop_tables.js"
import migration0003 from "./migrations/0003_run_attempts.js"
import { reapCrashedRuns } from "./reap.js"
import { SqlRecorderLive, type SqlRecorderOptions } from "./sql-recorder.js"
import { type LandscapeClient, makeLandscapeClient } from "./sqlite-client.js"

/** Every migration this version knows, by `<id>_<name>`. Never edit an applied one. */
export const migrations = {
  "0001_pipeline_tables": migration0001,
  "0002_loop_tables": migration0002,
  "0003_run_attempts": migration0003
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
  }).pipe(
    Effect.catchTag("SqlError", (e) =>
      Effect.fail(new RecorderError({ reason: "Database", message: `opening ${filename}: ${e.message}`, cause: e }))
    )
  )

const SQLITE_HEADER = "SQLite format 3\u0000"

/** What the start of a file says it is. */
type FileKind = "new" | "plaintext" | "text" | "opaque"

/**
 * A plaintext SQLite file starts with its header; an encrypted one (SQLCipher: a random
 * salt, then ciphertext) with bytes that look random; a file that reads as text is
 * neither (a mistyped --db pointing at a CSV).
 */
const fileKind = (filename: string): Effect.Effect<FileKind, RecorderError> =>
  Effect.suspend(() => {
    let size = 0
    try {
      size = statSync(filename).size
    } catch {
      return Effect.succeed("new" as const)
    }
    if (size === 0) return Effect.succeed("new" as const)
    const head = Buffer.alloc(Math.min(size, 512))
    try {
      const fd = openSync(filename, "r")
      try {
        readSync(fd, head, 0, head.length, 0)
      } finally {
        closeSync(fd)
      }
    } catch (e) {
      return Effect.fail(notLandscape(filename, `it cannot be read (${String(e)})`))
    }
    if (head.subarray(0, 16).toString("latin1") === SQLITE_HEADER) return Effect.succeed("plaintext" as const)
    const printable = head.every((b) => b === 9 || b === 10 || b === 13 || (b >= 32 && b !== 127))
    return Effect.succeed(printable ? "text" as const : "opaque" as const)
  })

/**
 * How the Landscape file is encrypted, from the settings (run, resume) or from the file
 * itself (the commands that only read one). `keyEnv` says where the passphrase comes
 * from, for the messages (`RUNLEDGER_AUDIT_KEY (or ELSPETH_AUDIT_KEY)`).
 */
export type LandscapeEncryption =
  /** The settings say `backend: sqlite`: an encrypted file is refused. */
  | { readonly _tag: "Plaintext"; readonly keyEnv: string }
  /** The settings say `backend: sqlcipher`: a new file is created encrypted; a plaintext one is refused. */
  | { readonly _tag: "Encrypted"; readonly passphrase: string | undefined; readonly keyEnv: string }
  /** No settings: an encrypted file is opened with the passphrase; a new one is plaintext. */
  | { readonly _tag: "Detect"; readonly passphrase: string | undefined; readonly keyEnv: string }

/** Where runledger reads the Landscape passphrase when the settings do not name a variable. */
export const DEFAULT_KEY_ENVS = ["RUNLEDGER_AUDIT_KEY", "ELSPETH_AUDIT_KEY"] as const

/** The passphrase in the first of `names` that is set and not blank. */
export const passphraseFrom = (
  env: Readonly<Record<string, string | undefined>>,
  names: ReadonlyArray<string>
): string | undefined => {
  for (const name of names) {
    const value = env[name]
    if (value !== undefined && value.trim() !== "") return value
  }
  return undefined
}

/** `A (or B)` for the messages. */
export const describeKeyEnvs = (names: ReadonlyArray<string>): string =>
  names.length <= 1 ? (names[0] ?? "") : `${names[0]} (or ${names.slice(1).join(", or ")})`

/** A Landscape that cannot be opened as configured: a key problem, a journal or payload store that cannot be set up. */
export class LandscapeOpenError extends Data.TaggedError("LandscapeOpenError")<{
  readonly file: string
  readonly reason: "Encryption" | "Journal" | "PayloadStore"
  readonly message: string
}> {}

const encryptionError = (file: string, message: string) => new LandscapeOpenError({ file, reason: "Encryption", message })

/** The passphrase to key the connection with (undefined: plaintext), or why the file cannot be opened. */
const choosePassphrase = (
  filename: string,
  kind: FileKind,
  encryption: LandscapeEncryption
): Effect.Effect<string | undefined, LandscapeOpenError | RecorderError> => {
  if (kind === "text") return Effect.fail(notLandscape(filename, "it is not a SQLite database"))
  switch (encryption._tag) {
    case "Plaintext":
      return kind === "opaque"
        ? Effect.fail(encryptionError(
          filename,
          `${filename} is not a plaintext SQLite database (it looks encrypted), and the settings do not say ` +
            `landscape.backend: sqlcipher; for an encrypted Landscape set it, with the passphrase in ${encryption.keyEnv}`
        ))
        : Effect.succeed(undefined)
    case "Encrypted":
      if (filename === ":memory:") {
        return Effect.fail(encryptionError(filename, "landscape.backend is sqlcipher: an encrypted Landscape needs a file, not :memory:"))
      }
      if (encryption.passphrase === undefined) {
        return Effect.fail(encryptionError(
          filename,
          `landscape.backend is sqlcipher, but ${encryption.keyEnv} is not set (or is blank): ` +
            `it holds the passphrase of the encrypted Landscape ${filename}`
        ))
      }
      if (kind === "plaintext") {
        return Effect.fail(encryptionError(
          filename,
          `${filename} is a plaintext Landscape, but landscape.backend is sqlcipher: runledger does not record into ` +
            `a plaintext file what was meant to be encrypted; give another landscape.url (or --db), or backend: sqlite`
        ))
      }
      return Effect.succeed(encryption.passphrase)
    case "Detect":
      if (kind !== "opaque") return Effect.succeed(undefined)
      if (encryption.passphrase === undefined) {
        return Effect.fail(encryptionError(
          filename,
          `${filename} is not a plaintext SQLite database: if it is an encrypted Landscape, set ${encryption.keyEnv} to its passphrase`
        ))
      }
      return Effect.succeed(encryption.passphrase)
  }
}

export interface LandscapeOpenOptions {
  /** Default: a plaintext file, or an encrypted one refused (no passphrase is known). */
  readonly encryption?: LandscapeEncryption
  /** The change journal; its path defaults to the Landscape file's with `.journal.jsonl`. */
  readonly journal?: Omit<JournalOptions, "path"> & { readonly path?: string | undefined }
}

const DEFAULT_ENCRYPTION: LandscapeEncryption = { _tag: "Detect", passphrase: undefined, keyEnv: describeKeyEnvs(DEFAULT_KEY_ENVS) }

/** Opens the connection, keyed as `encryption` says; a wrong key is a LandscapeOpenError. */
const openClient = (filename: string, encryption: LandscapeEncryption) =>
  Effect.gen(function*() {
    const kind = filename === ":memory:" ? "new" as const : yield* fileKind(filename)
    const passphrase = yield* choosePassphrase(filename, kind, encryption)
    return yield* makeLandscapeClient({ filename, passphrase }).pipe(
      Effect.mapError((e): LandscapeOpenError | RecorderError => {
        const code = (e.cause as { code?: unknown } | undefined)?.code
        const text = String((e.cause as { message?: unknown } | undefined)?.message ?? e.message)
        if (code === "SQLITE_NOTADB" && passphrase !== undefined) {
          return encryptionError(
            filename,
            `${filename} cannot be opened with the passphrase in ${encryption.keyEnv}: ` +
              `the passphrase is wrong, or the file is not an encrypted Landscape`
          )
        }
        if (code === "SQLITE_NOTADB") return notLandscape(filename, `it is not a SQLite database (${text})`)
        return new RecorderError({ reason: "Database", message: `opening ${filename}: ${text}`, cause: e })
      })
    )
  })

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
      const handle = yield* openClient(filename, options.encryption ?? DEFAULT_ENCRYPTION)
      const provideSql = Effect.provideService(SqlClient.SqlClient, handle.client)
      yield* checkAndMigrate(filename).pipe(provideSql)
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
  Recorder | ExportStore | LoopRecorder | ResumeStore | SqlClient.SqlClient | SqliteClient.SqliteClient,
  RecorderError | LandscapeUrlError | LandscapeOpenError
> =>
  Layer.mergeAll(SqlExportStoreLive, LoopRecorderSql, ResumeStoreSql).pipe(
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
