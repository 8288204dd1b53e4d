/**
 * `SqlRecorder`: the Recorder port over `@effect/sql`, composed of the write buffer
 * (`write-buffer.ts`), the statements that write it (`statements.ts`, tables and
 * columns in `tables.ts`) and the run queries (`recorder-queries.ts`).
 *
 * Records are appended to an in-memory buffer and written in chunked multi-row
 * INSERTs inside one short transaction per flush, tables in foreign-key order. Flushes
 * are serialised; appends made while a flush is running go to the next buffer. Appends
 * are refused for a run that does not exist or has ended.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { Clock, Effect, Exit, Layer, Option } from "effect"
import { hostname } from "node:os"
import { CANONICAL_VERSION, sha256Hex } from "../core/canonical.js"
import { newArtifactId, newRunId } from "../core/ids.js"
import { Recorder, RecorderError, type RecorderService } from "../services/recorder.js"
import type { AuditRecord, RunStatus } from "../services/records.js"
import { committedButNotJournalled } from "./journal.js"
import type { PayloadStore } from "./payload-store.js"
import { fromSql, invalid, jsonOf, missingRun } from "./recorder-errors.js"
import * as Queries from "./recorder-queries.js"
import { COMPACT_TAGS, CompactKeys } from "./compact-writer.js"
import * as Statements from "./statements.js"
import { TABLES } from "./tables.js"
import { WriteBuffer } from "./write-buffer.js"

export interface SqlRecorderOptions {
  /** Buffered records that trigger an automatic flush. */
  readonly maxBufferedRecords?: number
  /**
   * Where each source row's payload is also stored, by its hash (`payload_store`): written
   * before the transaction that records the row, so a recorded row always has its file.
   */
  readonly payloadStore?: PayloadStore | undefined
}

const isNonEmptyString = (v: unknown): v is string => typeof v === "string" && v.length > 0
const isIndex = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0

const RUN_STATUSES: ReadonlyArray<RunStatus> = ["running", "completed", "failed", "interrupted"]

export const makeSqlRecorder = (options: SqlRecorderOptions = {}) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // The database's file, to name it when a write fails (a full disk); absent for other clients.
    const sqlite = yield* Effect.serviceOption(SqliteClient.SqliteClient)
    const where = Option.match(sqlite, { onNone: () => "", onSome: (c) => (c.config.filename === ":memory:" ? "" : ` of ${c.config.filename}`) })
    const maxBuffered = options.maxBufferedRecords ?? 10_000
    const flushLock = yield* Effect.makeSemaphore(1)
    let buffer = new WriteBuffer()
    /** Status of runs this recorder has seen: appends are refused unless running. */
    const runStatus = new Map<string, RunStatus>()
    let lastCheckedRun = ""

    const nowIso = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms).toISOString())

    const knownRun = (runId: string): Effect.Effect<void, RecorderError> => {
      if (runId === lastCheckedRun) return Effect.void
      return Effect.suspend(() => {
        if (!isNonEmptyString(runId)) return Effect.fail(invalid(`run id must be a non-empty string, got ${JSON.stringify(runId)}`))
        const check = (status: RunStatus | undefined): Effect.Effect<void, RecorderError> => {
          if (status === undefined) return Effect.fail(missingRun(runId))
          if (status !== "running") {
            return Effect.fail(
              new RecorderError({ reason: "RunNotRunning", message: `run ${runId} is ${status}; its trail is closed to new records` })
            )
          }
          lastCheckedRun = runId
          return Effect.void
        }
        const cached = runStatus.get(runId)
        if (cached !== undefined) return check(cached)
        return Queries.runStatusOf(sql, runId).pipe(
          Effect.flatMap((status) => {
            if (status !== undefined) runStatus.set(runId, status)
            return check(status)
          })
        )
      })
    }

    /** The integer keys of the compact tables (schema v2), cached across flushes. */
    const keys = new CompactKeys()

    const writeBuffer = (b: WriteBuffer) =>
      Effect.gen(function*() {
        for (const spec of TABLES) {
          yield* COMPACT_TAGS.has(spec.tag)
            ? keys.write(sql, spec.tag, b.inserts(spec.tag))
            : Statements.insertRecords(sql, spec, b.inserts(spec.tag))
        }
        for (const u of b.stateUpdates) {
          if (!(yield* Statements.completeNodeState(sql, u))) {
            return yield* Effect.fail(invalid(`node state ${u.state_id} does not exist or is not open`))
          }
        }
        for (const u of b.batchUpdates) {
          if (!(yield* Statements.updateBatch(sql, u))) return yield* Effect.fail(invalid(`batch ${u.batch_id} does not exist`))
        }
      })

    const writeInTransaction = (b: WriteBuffer): Effect.Effect<void, RecorderError> =>
      sql.withTransaction(writeBuffer(b)).pipe(
        Effect.onExit((exit) => Effect.sync(() => (Exit.isSuccess(exit) ? keys.afterCommit(b.terminalTokens) : keys.reset()))),
        Effect.catchTag("SqlError", (error) => Effect.fail(fromSql(`writing the audit trail${where}`)(error))),
        // A transaction whose ROLLBACK fails too (a full disk) dies with the SqlError: it
        // is still a failed write of the audit trail, not a broken invariant.
        Effect.catchSomeDefect((defect) =>
          defect instanceof SqlError ? Option.some(Effect.fail(fromSql(`writing the audit trail${where}`)(defect))) : Option.none()
        )
      )

    const payloadStore = options.payloadStore
    const storePayloads = (b: WriteBuffer): Effect.Effect<void, RecorderError> =>
      Effect.suspend(() => {
        if (payloadStore === undefined) return Effect.void
        for (const r of b.inserts("Row")) {
          if (r._tag !== "Row") continue
          const problem = payloadStore.put(r.source_data_hash, r.source_data_json)
          if (problem !== undefined) {
            return Effect.fail(
              new RecorderError({ reason: "Database", message: `storing the payload of row ${r.row_id}: ${problem.message}`, cause: problem })
            )
          }
        }
        return Effect.void
      })

    const flushBuffer = (b: WriteBuffer): Effect.Effect<void, RecorderError> =>
      Effect.zipRight(storePayloads(b), writeInTransaction(b)).pipe(
        Effect.catchIf(
          (e) => e.reason === "ConstraintViolation" && /token_outcomes/.test(e.message),
          (constraintError) =>
            Effect.gen(function*() {
              // Keep the rest of the trail: drop the offending outcomes, write the others.
              const found = yield* Statements.tokensWithTerminalOutcome(sql, Array.from(b.terminalTokens)).pipe(
                Effect.mapError(fromSql("checking outcomes"))
              )
              if (found.length === 0) return yield* Effect.fail(constraintError)
              b.dropTerminalOutcomes(new Set(found))
              yield* writeInTransaction(b)
              return yield* Effect.fail(
                new RecorderError({
                  reason: "DuplicateTerminalOutcome",
                  message: `token ${found.join(", ")} already has a terminal outcome in the Landscape`
                })
              )
            })
        )
      )

    // A flush is never cut short: records taken from the buffer reach the database
    // (or the flush fails) even when the fiber that asked for it is interrupted.
    const flush: Effect.Effect<void, RecorderError> = flushLock.withPermits(1)(
      Effect.uninterruptible(Effect.suspend(() => {
        if (buffer.size === 0) return Effect.void
        const taken = buffer
        buffer = new WriteBuffer()
        return flushBuffer(taken)
      }))
    )

    const append = (records: ReadonlyArray<AuditRecord>): Effect.Effect<void, RecorderError> =>
      Effect.suspend(() => {
        // Check every run id named by the batch before touching the buffer.
        let runCheck: Effect.Effect<void, RecorderError> = Effect.void
        for (const r of records) {
          const runId = (r as { run_id?: unknown }).run_id
          if (runId !== undefined && runId !== lastCheckedRun) {
            runCheck = Effect.zipRight(runCheck, knownRun(runId as string))
          }
        }
        return Effect.flatMap(runCheck, () => {
          for (const r of records) {
            const error = buffer.push(r)
            if (error !== undefined) return Effect.fail(error)
          }
          return buffer.size >= maxBuffered ? flush : Effect.void
        })
      })

    const service: RecorderService = {
      now: nowIso,

      beginRun: Effect.fn("Recorder.beginRun")(function*(input) {
        const settingsJson = yield* jsonOf("run settings", input.settings)
        const schemaJson = input.sourceSchema === undefined ? null : yield* jsonOf("source schema", input.sourceSchema)
        const runId = input.runId ?? newRunId()
        if (!isNonEmptyString(runId)) return yield* Effect.fail(invalid(`run id must be a non-empty string`))
        const startedAt = yield* nowIso
        yield* Statements.insertRun(sql, {
          run_id: runId,
          started_at: startedAt,
          config_hash: sha256Hex(settingsJson),
          settings_json: settingsJson,
          canonical_version: CANONICAL_VERSION,
          source_schema_json: schemaJson,
          owner_pid: process.pid,
          owner_host: hostname()
        }).pipe(
          // A failure after the commit (the change journal could not be written) leaves
          // the run's row behind: it ends failed, with why, rather than `running`.
          Effect.tapError((e) =>
            committedButNotJournalled(e)
              ? Statements.closeRun(sql, runId, { status: "failed", at: startedAt, errorMessage: e.message, resultJson: null, reason: null })
                .pipe(Effect.ignore)
              : Effect.void
          ),
          Effect.mapError(fromSql(`starting run ${runId}`))
        )
        runStatus.set(runId, "running")
        return runId
      }),

      completeRun: Effect.fn("Recorder.completeRun")(function*(runId, end) {
        if (!RUN_STATUSES.includes(end.status) || (end.status as RunStatus) === "running") {
          return yield* Effect.fail(invalid(`a run ends completed, failed or interrupted, not ${JSON.stringify(end.status)}`))
        }
        yield* knownRun(runId)
        const resultJson = end.result === undefined ? null : yield* jsonOf("run result", end.result)
        yield* flush
        const at = yield* nowIso
        yield* Statements.closeRun(sql, runId, {
          status: end.status,
          at,
          errorMessage: end.errorMessage ?? null,
          resultJson,
          reason: end.reason ?? null
        }).pipe(
          Effect.mapError(fromSql(`completing run ${runId}`))
        )
        runStatus.set(runId, end.status)
        if (lastCheckedRun === runId) lastCheckedRun = ""
      }),

      append,
      flush,

      recordArtifact: (input) =>
        Effect.gen(function*() {
          if (!isIndex(input.sizeBytes)) return yield* Effect.fail(invalid(`artifact size must be a non-negative integer`))
          yield* append([{
            _tag: "Artifact",
            artifact_id: newArtifactId(),
            run_id: input.runId,
            sink_node_id: input.sinkNodeId,
            sink_name: input.sinkName,
            artifact_type: input.artifactType,
            path_or_uri: input.pathOrUri,
            content_hash: input.contentHash,
            size_bytes: input.sizeBytes,
            created_at: yield* nowIso
          }])
        }),

      listRuns: Effect.zipRight(flush, Queries.listRuns(sql)),

      getRun: Effect.fn("Recorder.getRun")(function*(runId) {
        yield* flush
        return yield* Queries.getRun(sql, runId)
      }),

      resolveRunId: Effect.fn("Recorder.resolveRunId")(function*(idOrLatest) {
        return yield* Queries.resolveRunId(sql, idOrLatest)
      })
    }

    // Whatever is still buffered when the recorder's scope closes reaches the database.
    yield* Effect.addFinalizer(() => flush.pipe(Effect.ignoreLogged))
    return service
  })

/** The Recorder over whatever `SqlClient` is provided (migrations already applied). */
export const SqlRecorderLive = (options?: SqlRecorderOptions) => Layer.scoped(Recorder, makeSqlRecorder(options))
