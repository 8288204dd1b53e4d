/**
 * The Landscape's SqlClient: `@effect/sql` over better-sqlite3-multiple-ciphers, one
 * connection behind a lock, like `@effect/sql-sqlite-node` but opened by us so that
 *
 * - an encrypted Landscape is keyed before anything else touches the file
 *   (`PRAGMA cipher = 'sqlcipher'`, `PRAGMA legacy = 4`, `PRAGMA key`: the SQLCipher 4
 *   file format, readable by SQLCipher itself), and
 * - a listener can run right after every commit (the change journal), with its
 *   failure returned as a typed SqlError of the statement or transaction that committed.
 *
 * The client is also provided as `SqliteClient` (same interface), so code that asks for
 * the SQLite client by that tag keeps working.
 */
import type { Reactivity } from "@effect/experimental/Reactivity"
import * as Client from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Statement from "@effect/sql/Statement"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import Database from "better-sqlite3-multiple-ciphers"
import { Cache, Context, Duration, Effect, Scope } from "effect"

export type CipherDatabase = Database.Database

export interface LandscapeClientOptions {
  readonly filename: string
  /** The SQLCipher passphrase; absent for a plaintext database. */
  readonly passphrase?: string | undefined
  /** Open an existing file read-only (never created, never switched to WAL, writes refused by SQLite). */
  readonly readonly?: boolean | undefined
}

/**
 * Runs after each commit: of a statement outside any transaction, and of an outermost
 * transaction. An error fails that statement or transaction (its writes stay committed).
 */
export type CommitListener = () => SqlError | undefined

export interface LandscapeClient {
  readonly client: SqliteClient.SqliteClient
  /** The open handle, for what has to run on it directly (the journal's queue). */
  readonly db: CipherDatabase
  readonly setCommitListener: (listener: CommitListener | undefined) => void
}

/** A SQL string literal: PRAGMA takes no bound parameters. */
const literal = (text: string) => `'${text.replace(/'/g, "''")}'`

/** Keys a fresh connection in the SQLCipher 4 format; must precede every other statement. */
const keyConnection = (db: CipherDatabase, passphrase: string) => {
  db.pragma(`cipher = 'sqlcipher'`)
  db.pragma(`legacy = 4`)
  db.pragma(`key = ${literal(passphrase)}`)
}

const TRANSACTION_CONTROL = /^\s*(BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\b/i

/**
 * Opens `filename` (keyed when a passphrase is given), reads its schema once, so that a
 * wrong key or a file that is no database fails here with the driver's code in the
 * cause, and switches to WAL. Closed with the scope.
 */
export const makeLandscapeClient = (
  options: LandscapeClientOptions
): Effect.Effect<LandscapeClient, SqlError, Scope.Scope | Reactivity> =>
  Effect.gen(function*() {
    const db = yield* Effect.acquireRelease(
      Effect.try({
        try: () =>
          options.readonly === true
            ? new Database(options.filename, { readonly: true, fileMustExist: true })
            : new Database(options.filename),
        catch: (cause) => new SqlError({ cause, message: `Failed to open ${options.filename}` })
      }),
      (db) => Effect.sync(() => db.close())
    )
    yield* Effect.try({
      try: () => {
        if (options.passphrase !== undefined) keyConnection(db, options.passphrase)
        db.prepare("SELECT count(*) FROM sqlite_master").get()
        if (options.readonly !== true) db.pragma("journal_mode = WAL")
      },
      catch: (cause) => new SqlError({ cause, message: `Failed to open ${options.filename}` })
    })

    let listener: CommitListener | undefined
    /** After a statement: outside a transaction it has committed (a pure read has nothing to say). */
    const afterStatement = (readonly: boolean): SqlError | undefined =>
      listener === undefined || readonly || db.inTransaction ? undefined : listener()

    const prepareCache = yield* Cache.make({
      capacity: 200,
      timeToLive: Duration.minutes(10),
      lookup: (sql: string) =>
        Effect.try({
          try: () => db.prepare(sql),
          catch: (cause) => new SqlError({ cause, message: "Failed to prepare statement" })
        })
    })

    const runStatement = (statement: Database.Statement, params: ReadonlyArray<unknown>, raw: boolean) =>
      Effect.withFiberRuntime<ReadonlyArray<any>, SqlError>((fiber) => {
        if (Context.get(fiber.currentContext, Client.SafeIntegers)) statement.safeIntegers(true)
        let result: ReadonlyArray<any>
        try {
          if (statement.reader) {
            // Bound as one array: better-sqlite3 takes an array as the anonymous parameters,
            // and a multi-row INSERT's thousands of values are not spread onto the stack.
            result = statement.all(params)
          } else {
            const info = statement.run(params)
            result = raw ? (info as unknown as ReadonlyArray<any>) : []
          }
        } catch (cause) {
          return Effect.fail(new SqlError({ cause, message: "Failed to execute statement" }))
        }
        const problem = afterStatement(statement.readonly)
        return problem === undefined ? Effect.succeed(result) : Effect.fail(problem)
      })

    const run = (sql: string, params: ReadonlyArray<unknown>, raw = false) =>
      Effect.flatMap(prepareCache.get(sql), (s) => runStatement(s, params, raw))

    const runValues = (sql: string, params: ReadonlyArray<unknown>) =>
      Effect.acquireUseRelease(
        prepareCache.get(sql),
        (statement) =>
          Effect.suspend(() => {
            let rows: ReadonlyArray<ReadonlyArray<unknown>> = []
            try {
              if (statement.reader) {
                statement.raw(true)
                rows = statement.all(params) as ReadonlyArray<ReadonlyArray<unknown>>
              } else {
                statement.run(params)
              }
            } catch (cause) {
              return Effect.fail(new SqlError({ cause, message: "Failed to execute statement" }))
            }
            const problem = afterStatement(statement.readonly)
            return problem === undefined ? Effect.succeed(rows) : Effect.fail(problem)
          }),
        (statement) => Effect.sync(() => statement.reader && statement.raw(false))
      )

    const connection: Connection = {
      execute(sql, params, transformRows) {
        return transformRows ? Effect.map(run(sql, params), transformRows) : run(sql, params)
      },
      executeRaw(sql, params) {
        return run(sql, params, true)
      },
      executeValues(sql, params) {
        return runValues(sql, params)
      },
      executeUnprepared(sql, params, transformRows) {
        const effect = Effect.suspend(() => {
          let statement: Database.Statement
          try {
            statement = db.prepare(sql)
          } catch (cause) {
            return Effect.fail(new SqlError({ cause, message: "Failed to prepare statement" }))
          }
          // BEGIN/COMMIT/ROLLBACK come this way: the commit of a transaction is
          // reported by withTransaction below, where a failure can be typed.
          if (TRANSACTION_CONTROL.test(sql)) {
            try {
              statement.run(...(params ?? []))
              return Effect.succeed<ReadonlyArray<any>>([])
            } catch (cause) {
              return Effect.fail(new SqlError({ cause, message: "Failed to execute statement" }))
            }
          }
          return runStatement(statement, params ?? [], false)
        })
        return transformRows ? Effect.map(effect, transformRows) : effect
      },
      executeStream() {
        return Effect.dieMessage("executeStream not implemented")
      }
    }

    const semaphore = yield* Effect.makeSemaphore(1)
    const acquirer = semaphore.withPermits(1)(Effect.succeed(connection))
    const transactionAcquirer = Effect.uninterruptibleMask((restore) =>
      Effect.as(
        Effect.zipRight(
          restore(semaphore.take(1)),
          Effect.tap(Effect.scope, (scope) => Scope.addFinalizer(scope, semaphore.release(1)))
        ),
        connection
      )
    )

    const base = yield* Client.make({
      acquirer,
      // A writer takes the write lock when its transaction begins (waiting out another
      // writer with the busy timeout), so what it reads there stays true until it commits.
      beginTransaction: options.readonly === true ? "BEGIN" : "BEGIN IMMEDIATE",
      compiler: Statement.makeCompilerSqlite(),
      transactionAcquirer,
      spanAttributes: [["db.system.name", "sqlite"]]
    })
    const baseTransaction = base.withTransaction
    // The outermost transaction has committed once it returns with no transaction open.
    const withTransaction = <R, E, A>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R> =>
      Effect.flatMap(baseTransaction(effect), (a) =>
        Effect.suspend(() => {
          const problem = listener === undefined || db.inTransaction ? undefined : listener()
          return problem === undefined ? Effect.succeed(a) : Effect.fail(problem)
        }))

    const config: SqliteClient.SqliteClientConfig = { filename: options.filename }
    const client = Object.assign(base, {
      withTransaction,
      [SqliteClient.TypeId]: SqliteClient.TypeId,
      config,
      export: Effect.try({
        try: () => db.serialize() as Uint8Array,
        catch: (cause) => new SqlError({ cause, message: "Failed to export database" })
      }),
      backup: (destination: string) =>
        Effect.tryPromise({
          try: () => db.backup(destination),
          catch: (cause) => new SqlError({ cause, message: "Failed to backup database" })
        }),
      loadExtension: (path: string) =>
        Effect.zipRight(
          Effect.try({
            try: () => db.loadExtension(path),
            catch: (cause) => new SqlError({ cause, message: "Failed to load extension" })
          }),
          prepareCache.invalidateAll
        )
    }) as unknown as SqliteClient.SqliteClient

    return {
      client,
      db,
      setCommitListener: (l: CommitListener | undefined) => {
        listener = l
      }
    }
  })
